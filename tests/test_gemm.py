"""The CPU GEMM against a float64 numpy reference: every m, n, k remainder around the
micro-tile sizes, every operand layout the trainer uses, every epilogue, every instruction set
this CPU can run, float32 and float64."""

import itertools
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from fusedmlp import _cpu

from tests.conftest import CPU_ISAS as ISAS
GEMM = {np.float32: _cpu.gemm_f32, np.float64: _cpu.gemm_f64}
EPS = {np.float32: np.finfo(np.float32).eps, np.float64: np.finfo(np.float64).eps}


@pytest.fixture(params=ISAS)
def isa(request):
    before = _cpu.active_isa()
    _cpu.set_isa(request.param)
    yield request.param
    _cpu.set_isa(before)


def check_close(got, ref, k, dtype, what):
    """|got - ref| <= abs_tol + |ref| * eps * growth, printing the first mismatches."""
    tol = EPS[dtype] * (4 * max(k, 1)) * (1.0 + np.abs(ref))
    bad = np.argwhere(~(np.abs(got - ref) <= tol))
    if bad.size:
        lines = [f"{tuple(i)}: got {got[tuple(i)]!r} ref {ref[tuple(i)]!r}" for i in bad[:5]]
        pytest.fail(f"{what}: {len(bad)} mismatches, first:\n" + "\n".join(lines))


def layouts(a):
    """The same matrix as C-order, Fortran-order, and as views into larger arrays of either
    order: rows (or columns) three items longer than the matrix's, so that the leading
    dimension is not the width and the rows (columns) past the first start unaligned."""
    yield a
    yield np.asfortranarray(a)
    m, n = a.shape
    rows = np.full((m, n + 3), np.nan, dtype=a.dtype)
    rows[:, :n] = a
    yield rows[:, :n]
    cols = np.full((m + 3, n), np.nan, dtype=a.dtype, order="F")
    cols[:m] = a
    yield cols[:m]


# sizes around the micro-tile edges of every instruction set: MR in {4, 6, 12}, NR in {8, 16, 32}
EDGE = [1, 3, 4, 5, 6, 7, 11, 12, 13, 15, 16, 17, 24, 31, 32, 33, 47, 49]
KS = [0, 1, 2, 7, 8, 9, 255, 256, 257, 450]  # (KC = 256: up to 256 one depth block, then two)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_remainder(isa, dtype):
    rng = np.random.default_rng(1)
    for m in EDGE:
        for n in EDGE:
            k = KS[(m * 7 + n) % len(KS)]
            a = rng.standard_normal((m, k)).astype(dtype)
            b = rng.standard_normal((k, n)).astype(dtype)
            ref = a.astype(np.float64) @ b.astype(np.float64)
            check_close(GEMM[dtype](a, b), ref, k, dtype, f"{isa} m={m} n={n} k={k}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_every_depth(isa, dtype):
    rng = np.random.default_rng(2)
    for k in KS:
        a = rng.standard_normal((13, k)).astype(dtype)
        b = rng.standard_normal((k, 33)).astype(dtype)
        ref = a.astype(np.float64) @ b.astype(np.float64)
        check_close(GEMM[dtype](a, b), ref, k, dtype, f"{isa} k={k}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transposed_operands(isa, dtype):
    rng = np.random.default_rng(3)
    for m, n, k in [(37, 50, 29), (200, 33, 13), (5, 300, 200)]:
        a0 = rng.standard_normal((m, k)).astype(dtype)
        b0 = rng.standard_normal((k, n)).astype(dtype)
        ref = a0.astype(np.float64) @ b0.astype(np.float64)
        for a in layouts(a0):
            for b in layouts(b0):
                check_close(GEMM[dtype](a, b), ref, k, dtype, f"{isa} {m}x{n}x{k} strides {a.strides} {b.strides}")
        # strided (non-unit) views in both dimensions are packed too
        big = np.zeros((2 * m, 3 * k), dtype=dtype)
        big[::2, ::3] = a0
        check_close(GEMM[dtype](big[::2, ::3], b0), ref, k, dtype, f"{isa} doubly strided A")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", ["identity", "logistic", "tanh", "relu"])
def test_bias_activation_epilogue(isa, dtype, act):
    rng = np.random.default_rng(4)
    m, n, k = 29, 45, 70
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype) / 8
    bias = rng.standard_normal(n).astype(dtype)
    z = a.astype(np.float64) @ b.astype(np.float64) + bias
    ref = {"identity": z, "logistic": 1 / (1 + np.exp(-z)), "tanh": np.tanh(z), "relu": np.maximum(z, 0)}[act]
    got = GEMM[dtype](a, b, epilogue="bias_activation", activation=act, bias=bias)
    check_close(got, ref, k, dtype, f"{isa} {act}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weight_grad_epilogue_and_colsum(isa, dtype):
    # dW = (A^T dZ + alpha W) * scale with A^T read in place, db = colsum(dZ) * scale
    rng = np.random.default_rng(5)
    batch, fan_in, fan_out = 57, 40, 35
    act = rng.standard_normal((batch, fan_in)).astype(dtype)
    dz = rng.standard_normal((batch, fan_out)).astype(dtype)
    w = rng.standard_normal((fan_in, fan_out)).astype(dtype)
    alpha, scale = 0.3, 1 / batch
    got, colsum = GEMM[dtype](act.T, dz, epilogue="weight_grad", aux=w, alpha=alpha, scale=scale, colsum=True)
    ref = (act.astype(np.float64).T @ dz + alpha * w) * scale
    check_close(got, ref, batch, dtype, f"{isa} weight grad")
    check_close(colsum, dz.astype(np.float64).sum(0) * scale, batch, dtype, f"{isa} colsum")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("act", ["identity", "logistic", "tanh", "relu"])
def test_activation_grad_epilogue(isa, dtype, act):
    # dZ_prev = (dZ W^T) * f'(a_prev), W^T read through strides
    rng = np.random.default_rng(6)
    batch, fan_in, fan_out = 43, 37, 26
    dz = rng.standard_normal((batch, fan_out)).astype(dtype)
    w = rng.standard_normal((fan_in, fan_out)).astype(dtype)
    z = rng.standard_normal((batch, fan_in))
    a_prev = {"identity": z, "logistic": 1 / (1 + np.exp(-z)), "tanh": np.tanh(z), "relu": np.maximum(z, 0)}[act].astype(dtype)
    deriv = {"identity": np.ones_like(z), "logistic": a_prev * (1 - a_prev), "tanh": 1 - a_prev.astype(np.float64) ** 2,
             "relu": (a_prev != 0).astype(np.float64)}[act]
    got = GEMM[dtype](dz, w.T, epilogue="activation_grad", activation=act, aux=a_prev)
    ref = (dz.astype(np.float64) @ w.T.astype(np.float64)) * deriv
    check_close(got, ref, fan_out, dtype, f"{isa} {act} grad")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_accumulate(isa, dtype):
    rng = np.random.default_rng(7)
    a = rng.standard_normal((30, 500)).astype(dtype)
    b = rng.standard_normal((500, 40)).astype(dtype)
    c0 = rng.standard_normal((30, 40)).astype(dtype)
    got = GEMM[dtype](a, b, c=c0)
    check_close(got, c0 + a.astype(np.float64) @ b, 500, dtype, f"{isa} accumulate")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_out(isa, dtype):
    # out= receives the product in place (what the GEMM benchmark times beside numpy's
    # matmul(out=)): the same bits as a new array, with or without C, C itself as out
    rng = np.random.default_rng(9)
    a = rng.standard_normal((37, 300)).astype(dtype)
    b = rng.standard_normal((300, 75)).astype(dtype)
    bias = rng.standard_normal(75).astype(dtype)
    c0 = rng.standard_normal((37, 75)).astype(dtype)
    for kw in ({}, {"epilogue": "bias_activation", "activation": "relu", "bias": bias}):
        want = GEMM[dtype](a, b, **kw)
        out = np.full((37, 75), np.nan, dtype)
        got = GEMM[dtype](a, b, out=out, **kw)
        assert got is out
        np.testing.assert_array_equal(out, want, err_msg=f"{isa} out {kw.get('epilogue')}")
    want = GEMM[dtype](a, b, c=c0)
    out = np.full((37, 75), np.nan, dtype)
    GEMM[dtype](a, b, c=c0, out=out)
    np.testing.assert_array_equal(out, want, err_msg=f"{isa} out with C")
    c = c0.copy()
    assert GEMM[dtype](a, b, c=c, out=c) is c
    np.testing.assert_array_equal(c, want, err_msg=f"{isa} out is C")
    # with the column sum (a tuple), one column, one row, several threads
    want, want_cs = GEMM[dtype](a, b, colsum=True, scale=0.5)
    out = np.empty((37, 75), dtype)
    got, cs = GEMM[dtype](a, b, colsum=True, scale=0.5, out=out)
    assert got is out
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(cs, want_cs)
    for a1, b1 in ((a, b[:, :1].copy()), (a[:1].copy(), b)):
        for threads in (1, 2, 3):
            out = np.empty((a1.shape[0], b1.shape[1]), dtype)
            GEMM[dtype](a1, b1, n_threads=threads, out=out)
            np.testing.assert_array_equal(out, GEMM[dtype](a1, b1, n_threads=1),
                                          err_msg=f"{isa} out {out.shape} threads={threads}")


def test_out_from_python_threads():
    # each calling thread keeps its own workspace: concurrent calls into out arrays of their own
    rng = np.random.default_rng(10)
    a = rng.standard_normal((64, 300)).astype(np.float32)
    bs = [rng.standard_normal((300, 40 + 7 * i)).astype(np.float32) for i in range(4)]
    want = [_cpu.gemm_f32(a, b, n_threads=1) for b in bs]
    outs = [np.empty_like(w) for w in want]

    def work(i):
        for _ in range(20):
            _cpu.gemm_f32(a, bs[i], n_threads=1, out=outs[i])

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(work, range(4)))
    for w, o in zip(want, outs):
        np.testing.assert_array_equal(o, w)


def test_out_bad():
    a = np.ones((3, 4), np.float32)
    b = np.ones((4, 2), np.float32)
    for out, err in [(np.empty((2, 3), np.float32), ValueError), (np.empty((3, 2), np.float64), TypeError),
                     (np.empty((2, 3), np.float32).T, ValueError), ([[0.0, 0.0]] * 3, TypeError)]:
        with pytest.raises(err):
            _cpu.gemm_f32(a, b, out=out)
    ro = np.empty((3, 2), np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        _cpu.gemm_f32(a, b, out=ro)
    sq = np.ones((4, 4), np.float32)
    with pytest.raises(ValueError, match="shares memory"):
        _cpu.gemm_f32(sq, sq, out=sq)
    rows = np.ones((8, 4), np.float32)
    with pytest.raises(ValueError, match="shares memory"):  # (A's rows 7, 5, 3, 1: negative strides)
        _cpu.gemm_f32(rows[::-2], sq, out=rows[:4])
    np.testing.assert_array_equal(_cpu.gemm_f32(rows[::-2], sq, out=np.empty((4, 4), np.float32)), 4)
    bias = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match="shares memory"):
        _cpu.gemm_f32(a, b, epilogue="bias_activation", bias=bias[0], out=bias)
    raw = np.zeros(3 * 2 * 4 + 1, np.uint8)[1:]  # (one byte past an aligned start)
    with pytest.raises(ValueError, match="aligned"):
        _cpu.gemm_f32(a, b, out=raw.view(np.float32).reshape(3, 2))
    with pytest.raises(ValueError, match="aligned"):
        _cpu.gemm_f32(np.zeros(3 * 4 * 4 + 1, np.uint8)[1:].view(np.float32).reshape(3, 4), b)
    with pytest.raises(TypeError):  # (byte-swapped)
        _cpu.gemm_f32(a, b, out=np.empty((3, 2), np.dtype(np.float32).newbyteorder()))
    c = np.zeros((4, 2), np.float32)
    with pytest.raises(ValueError, match="overlaps C"):
        _cpu.gemm_f32(a, b, c=c[1:], out=c[:3])
    np.testing.assert_array_equal(c, 0)  # (nothing written)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_big_residual(isa, dtype, threads):
    # Big sizes checked cheaply: C t against A (B t) for a random vector t.
    rng = np.random.default_rng(8)
    m, n, k = 1031, 777, 1500
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    t = rng.standard_normal(n)
    c = GEMM[dtype](a, b, n_threads=threads)
    lhs = c.astype(np.float64) @ t
    rhs = a.astype(np.float64) @ (b.astype(np.float64) @ t)
    scale = np.abs(a).astype(np.float64) @ (np.abs(b).astype(np.float64) @ np.abs(t))
    assert np.all(np.abs(lhs - rhs) <= 4 * k * EPS[dtype] * scale)


def test_rows_do_not_depend_on_the_batch(isa):
    # A row's result is the same whether it is computed alone, in a tile edge or mid-batch:
    # predictions do not change with the batch they are made in.
    rng = np.random.default_rng(9)
    a = rng.standard_normal((97, 300)).astype(np.float32)
    b = rng.standard_normal((300, 70)).astype(np.float32)
    full = _cpu.gemm_f32(a, b)
    for rows in (slice(0, 1), slice(5, 6), slice(13, 40), slice(96, 97)):
        np.testing.assert_array_equal(_cpu.gemm_f32(a[rows], b), full[rows])


def epilogue_products(gemm, a, b, bias, aux, c0, threads=0):
    """A B with each epilogue the trainer uses: plain, bias + tanh, bias + relu and bias alone,
    the logistic gradient against aux and relu's against relu(aux) (relu's and the bias alone:
    whole tiles written to C by the AVX2 and AVX-512 kernels themselves), accumulation into a
    copy of c0."""
    return {"plain": gemm(a, b, n_threads=threads),
            "tanh": gemm(a, b, epilogue="bias_activation", activation="tanh", bias=bias, n_threads=threads),
            "relu": gemm(a, b, epilogue="bias_activation", activation="relu", bias=bias, n_threads=threads),
            "identity": gemm(a, b, epilogue="bias_activation", activation="identity", bias=bias,
                             n_threads=threads),
            "activation_grad": gemm(a, b, epilogue="activation_grad", activation="logistic", aux=aux,
                                    n_threads=threads),
            "relu_grad": gemm(a, b, epilogue="activation_grad", activation="relu",
                              aux=np.maximum(aux, 0), n_threads=threads),
            "accumulate": gemm(a, b, c=c0.copy(), n_threads=threads)}


def assert_rows_match(gemm, a, b, bias, aux, c0, rows, full, what):
    """Rows `rows` of every epilogue product, computed alone on 1 and 2 threads, equal the same
    rows of `full` (epilogue_products of all rows) bit for bit."""
    for threads in (1, 2):
        got = epilogue_products(gemm, a[rows], b, bias, aux[rows], c0[rows], threads)
        for kind, value in got.items():
            np.testing.assert_array_equal(value, full[kind][rows], err_msg=f"{what} {kind} threads={threads}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_b_read_in_place_matches_b_packed(isa, dtype):
    # Up to a few row panels of A (96 rows on AVX-512 and AVX2, 32 on the portable kernel;
    # blocking.h), full-width panels of a row-major B are read in place, more rows pack them:
    # rows on either side of the limit must give the packed product's bits, for every column
    # remainder, one and several depth blocks, every epilogue, 1 and 2 threads (and a B that is
    # not row-major, always packed).
    rng = np.random.default_rng(11)
    gemm = GEMM[dtype]
    for n, k in ((16, 97), (33, 600), (50, 300), (100, 257)):
        a = rng.standard_normal((130, k)).astype(dtype)
        bias = rng.standard_normal(n).astype(dtype)
        aux = rng.standard_normal((130, n)).astype(dtype)
        c0 = rng.standard_normal((130, n)).astype(dtype)
        b_rows = rng.standard_normal((k, n)).astype(dtype)
        for b in (b_rows, np.asfortranarray(b_rows)):
            full = epilogue_products(gemm, a, b, bias, aux, c0)
            for rows in (31, 32, 33, 49, 90, 95, 96, 97, 120):
                assert_rows_match(gemm, a, b, bias, aux, c0, slice(130 - rows, 130), full,
                                  f"{isa} rows={rows} n={n} k={k} b strides={b.strides}")
        check_close(full["plain"], a.astype(np.float64) @ b_rows.astype(np.float64), k, dtype, f"{isa} n={n}")


def assert_last_rows_match_full_tiles(isa, dtype, seed, shapes, total, row_counts):
    """For each (n, k): the last `rows` rows of a `total`-row A, for each count in row_counts and
    each A layout (row-major, column-major, strided), equal the same rows of the whole product
    bit for bit (assert_rows_match: every epilogue, 1 and 2 threads)."""
    rng = np.random.default_rng(seed)
    gemm = GEMM[dtype]
    for n, k in shapes:
        b = rng.standard_normal((k, n)).astype(dtype)
        bias = rng.standard_normal(n).astype(dtype)
        base = rng.standard_normal((total, k)).astype(dtype)
        aux = rng.standard_normal((total, n)).astype(dtype)
        c0 = rng.standard_normal((total, n)).astype(dtype)
        for a in (base, np.asfortranarray(base), np.repeat(base, 2, axis=1)[:, ::2]):
            full = epilogue_products(gemm, a, b, bias, aux, c0)
            for rows in row_counts:
                # (a slice keeps the layout's strides)
                assert_rows_match(gemm, a, b, bias, aux, c0, slice(total - rows, total), full,
                                  f"{isa} rows={rows} n={n} k={k} strides={a.strides}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bias_relu_bits(isa, dtype):
    # Bias + identity is the plain product plus the bias, bias + relu is
    # z > 0 ? z : (z == z ? +0 : z) of it, and relu's gradient against stored activations s is
    # s == 0 ? +0 : the plain product, bit for bit on every tile: whole tiles (written to C by the
    # AVX2 and AVX-512 kernels, relu as max(0, z) + 0, its gradient as a compare and a select)
    # and edge tiles (the tile's write-back) alike, with NaN and infinities in A, z exactly +0
    # (rows of zeros with a bias of +0 and -0) and -0 (a row whose one product underflows to -0,
    # with a bias of -0: what the + 0 after max is for), s of +0, -0 and NaN, one and several
    # depth blocks, accumulation into C, 1 and 2 threads.
    rng = np.random.default_rng(29)
    gemm = GEMM[dtype]
    uint = np.uint32 if dtype == np.float32 else np.uint64
    for m, n, k in ((50, 50, 50), (96, 64, 300), (37, 75, 600), (200, 300, 20)):
        a = rng.standard_normal((m, k)).astype(dtype)
        a[::7] = 0  # (z = bias: +0 and -0 among the biases below)
        a[3, 1], a[20, 2], a[30 % m, 0] = np.nan, np.inf, -np.inf
        b = rng.standard_normal((k, n)).astype(dtype)
        tiny = np.finfo(dtype).tiny
        a[14, -1], b[-1] = -tiny, tiny  # (row 14's chains: +0 until a last multiply-add of -0)
        bias = rng.standard_normal(n).astype(dtype)
        bias[::5], bias[1::5] = dtype(0), dtype(-0.0)
        c0 = rng.standard_normal((m, n)).astype(dtype)
        c0[1::9] = 0
        stored = np.maximum(rng.standard_normal((m, n)), 0).astype(dtype)
        stored[::4, ::3], stored[2, :5] = dtype(-0.0), np.nan
        for threads in (1, 2):
            for c in (None, c0):
                def product(**ep):
                    into = {} if c is None else {"c": c.copy()}
                    return gemm(a, b, n_threads=threads, **into, **ep)
                z = product()
                z += bias  # (in dtype: the engine's order, (sums + c) + bias)
                ident = product(epilogue="bias_activation", activation="identity", bias=bias)
                relu = product(epilogue="bias_activation", activation="relu", bias=bias)
                grad = product(epilogue="activation_grad", activation="relu", aux=stored)
                want = np.where(z > 0, z, np.where(z == z, dtype(0), z))
                want_grad = np.where(stored == 0, dtype(0), product())
                what = f"{isa} m={m} n={n} k={k} threads={threads} accumulate={c is not None}"
                assert np.isnan(z).any() and (z == 0).any(), what
                if isa != "generic" and k <= 256 and c is None:  # (fused multiply-adds, one block)
                    assert ((z == 0) & np.signbit(z)).any(), what
                np.testing.assert_array_equal(ident.view(uint), z.view(uint), err_msg=what + " identity")
                np.testing.assert_array_equal(relu.view(uint), want.view(uint), err_msg=what + " relu")
                np.testing.assert_array_equal(grad.view(uint), want_grad.view(uint),
                                              err_msg=what + " relu gradient")


def test_float32_tanh_within_one_and_a_half_ulps(isa):
    # float32 tanh is plain arithmetic that the write-backs vectorise (math::tanh_simd): within
    # 1.5 ulp of tanh wherever it is finite (numpy's float32 tanh: 1.37; the ulp of the binade
    # below where tanh rounds to a power of two), odd, +-1 beyond 9.5, NaN kept; through the
    # bias + tanh write-back of a product of depth one, 70 columns of the same z = x * 1 + 0
    # (whole vectors and a remainder), and of one column (the narrow path's write-back)
    x = np.concatenate([np.linspace(-10, 10, 40_001, dtype=np.float32),
                        np.linspace(-0.7, 0.7, 20_001, dtype=np.float32),
                        np.logspace(-30, 0, 2_001).astype(np.float32)])
    x = np.concatenate([x, -x, np.array([np.inf, -np.inf, 1e30, -1e30], np.float32)])
    wide = GEMM[np.float32](x[:, None], np.ones((1, 70), np.float32), epilogue="bias_activation",
                            activation="tanh", bias=np.zeros(70, np.float32))
    one = GEMM[np.float32](x[:, None], np.ones((1, 1), np.float32), epilogue="bias_activation",
                           activation="tanh", bias=np.zeros(1, np.float32))
    np.testing.assert_array_equal(wide, np.repeat(one, 70, axis=1))
    got = one[:, 0]
    ref = np.tanh(x.astype(np.float64))
    below = np.nextafter(np.abs(ref).astype(np.float32), np.float32(0))
    ulps = np.abs(got - ref) / np.spacing(below).astype(np.float64)
    assert ulps.max() <= 1.5, (isa, x[np.argmax(ulps)], ulps.max())
    np.testing.assert_array_equal(got[: x.size // 2 - 2], -got[x.size // 2 - 2: -4])
    assert list(got[-4:]) == [1, -1, 1, -1]
    nan = GEMM[np.float32](np.full((3, 1), np.nan, np.float32), np.ones((1, 1), np.float32),
                           epilogue="bias_activation", activation="tanh", bias=np.zeros(1, np.float32))
    assert np.isnan(nan).all()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_all_zero_steps_skipped_give_every_step_bits(isa, dtype):
    # More row panels of A than B_IN_PLACE_PANELS, B of several panels. A column-major A's panels
    # (the weight gradient's X^T) are packed when the product goes by row bands (split_m in
    # gemm_impl.h: here the shapes with n <= 64 on most thread counts) without their all-zero steps
    # (compact_zero_steps), and a row-major A's panels (the first layer's X) are read in place on
    # their other steps (row_panel_kept_steps), in plain products. A whole panel's steps whose MR
    # values are all zeros (of either sign) are left out when they are at least an eighth of them
    # (the AVX2 and AVX-512 kernels). Both layouts must give the bits of the same product with A
    # strided (packed as it is, every step): panels with no zero step, a few, most and all of them,
    # the first and last steps zero, -0 among the zeros, a NaN on an otherwise zero step (never
    # skipped); one and several depth blocks, whole and edge column panels, an edge row panel with
    # zero steps; plain, the weight gradient's epilogue, accumulated; 1 to 3 threads. (No product
    # of these values rounds to zero, so the zeros' signs match too: compact_zero_steps.)
    rng = np.random.default_rng(23)
    gemm = GEMM[dtype]
    fractions = [0.9, 0.05, 0.3, 0.0, 1.0, 0.5]  # (of each 12-row band's steps zeroed, in turn)
    skipped = {"column-major": 0, "row-major": 0}
    # (293 rows: 49 row panels on AVX2, 25 on AVX-512, the last of 5 rows; 209: 35 and 18)
    for m, k, n in ((293, 200, 33), (293, 200, 50), (293, 450, 40), (293, 300, 64), (293, 37, 56),
                    (209, 300, 300), (209, 600, 150)):
        a = rng.standard_normal((m, k)).astype(dtype)
        for band, fraction in zip(range(0, m, 12), itertools.cycle(fractions)):
            zero = rng.random(k) < fraction
            zero[[0, -1]] = fraction >= 0.9
            a[band:band + 12, zero] = -0.0 if band % 36 == 24 else 0.0
        a[12 * 4 + 3, k // 2] = np.nan  # (in a band of all zeros)
        a[12 * 5 + 1, k // 3] = np.inf  # (in a band of half)
        b = rng.standard_normal((k, n)).astype(dtype)
        aux = rng.standard_normal((m, n)).astype(dtype)
        c0 = rng.standard_normal((m, n)).astype(dtype)
        every_step = np.repeat(a, 2, axis=1)[:, ::2]  # (no stride of 1: packed, never skips)
        layouts = {"column-major": np.asfortranarray(a), "row-major": np.ascontiguousarray(a)}
        kinds = {"plain": {}, "accumulate": {"c": c0},
                 "weight_grad": {"epilogue": "weight_grad", "aux": aux, "alpha": 0.3, "scale": 0.01,
                                 "colsum": True}}
        for threads, (kind, kw) in itertools.product((1, 2, 3), kinds.items()):
            want = gemm(every_step, b, n_threads=threads, **kw)
            for i, (order, layout) in enumerate(layouts.items()):
                before = _cpu._skipped_zero_steps()[i]
                got = gemm(layout, b, n_threads=threads, **kw)
                skipped[order] += _cpu._skipped_zero_steps()[i] - before
                for g, w in zip(*((got, want) if isinstance(got, tuple) else ((got,), (want,)))):
                    what = f"{isa} {order} m={m} k={k} n={n} threads={threads} {kind}"
                    np.testing.assert_array_equal(g, w, err_msg=what)
                    np.testing.assert_array_equal(np.signbit(g), np.signbit(w), err_msg=what)
        finite = np.isfinite(a).all(axis=1)
        ref = a[finite].astype(np.float64) @ b.astype(np.float64)
        check_close(gemm(every_step, b)[finite], ref, k, dtype, f"{isa} m={m} k={k} n={n}")
    for order, steps in skipped.items():
        assert steps > 0 if isa in ("avx2", "avx512") else steps == 0, (order, steps)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_bias_activation_products_leave_out_zero_steps_where_b_is_finite(isa, dtype):
    # A prediction's products (zero_steps: bias and relu, the bias alone, tanh through the tile)
    # read a row-major A's panels in place on their kept steps where the panels of B that a
    # thread packs are finite, each thread checking its own (a column split: the 150-row shape on
    # two and three threads): the bits of the same product reading every step, its zeros' signs
    # too, over one and several depth blocks (those of fewer than 128 steps, and depth 37, read
    # every step: kRowSkipMinDepth), whole and edge panels, 1 to 3 threads. A NaN or an
    # infinity of B on a step that is zero in every row (in the first and the last depth block)
    # reaches its column of C as in the full product, while the threads whose panels are finite
    # still leave steps out.
    rng = np.random.default_rng(29)
    gemm = GEMM[dtype]
    fractions = [0.9, 0.05, 0.3, 0.0, 1.0, 0.5]
    skipped = {"finite": 0, "not finite": 0, "not asked": 0}
    for m, k, n in ((293, 200, 50), (209, 701, 300), (150, 300, 300), (293, 37, 56)):
        a = rng.random((m, k)).astype(dtype)
        for band, fraction in zip(range(0, m, 12), itertools.cycle(fractions)):
            zero = rng.random(k) < fraction
            a[band:band + 12, zero] = -0.0 if band % 36 == 24 else 0.0
        late, early = k - 3, 1  # (zero in every row)
        a[:, [early, late]] = 0.0
        b = (rng.standard_normal((k, n)) * 0.1).astype(dtype)
        bias = rng.standard_normal(n).astype(dtype)
        every_step = np.repeat(a, 2, axis=1)[:, ::2]  # (no stride of 1: packed, never skips)
        nan_col, inf_col = n - 3, 2
        b_bad = b.copy()
        b_bad[late, nan_col] = np.nan
        b_bad[early, inf_col] = np.inf
        b_late_nan = b.copy()
        b_late_nan[late, nan_col] = np.nan  # (the last thread's columns in a column split)
        for (name, bb), act, threads in itertools.product(
                (("finite", b), ("not finite", b_bad), ("late NaN", b_late_nan)),
                ("relu", "identity", "tanh"), (1, 2, 3)):
            kw = dict(epilogue="bias_activation", activation=act, bias=bias, n_threads=threads)
            want = gemm(every_step, bb, **kw)
            before = _cpu._skipped_zero_steps()[1]
            got = gemm(a, bb, zero_steps=True, **kw)
            key = "finite" if name == "finite" else "not finite"
            skipped[key] += _cpu._skipped_zero_steps()[1] - before
            what = f"{isa} {name} {act} m={m} k={k} n={n} threads={threads}"
            np.testing.assert_array_equal(got, want, err_msg=what)
            np.testing.assert_array_equal(np.signbit(got), np.signbit(want), err_msg=what)
            if name != "finite":
                assert np.isnan(got[:, nan_col]).all(), what
            if name == "not finite":
                assert (~np.isfinite(got[:, inf_col])).all(), what
            before = _cpu._skipped_zero_steps()[1]
            assert_same = gemm(a, bb, **kw)  # (not asked: every step)
            skipped["not asked"] += _cpu._skipped_zero_steps()[1] - before
            np.testing.assert_array_equal(assert_same, want, err_msg=what)
        ref = a.astype(np.float64) @ b.astype(np.float64) + bias
        check_close(gemm(a, b, epilogue="bias_activation", bias=bias, zero_steps=True), ref, k,
                    dtype, f"{isa} m={m} k={k} n={n}")
    if isa in ("avx2", "avx512"):
        assert skipped["finite"] > 0 and skipped["not finite"] > 0, skipped
    else:
        assert skipped["finite"] == skipped["not finite"] == 0, skipped
    assert skipped["not asked"] == 0, skipped


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rank_one_products_are_exact(isa, dtype):
    # A product of depth one (the data gradient of a one-unit output layer, the forward of a
    # one-input layer) is each a_i b_j rounded once, as the tiled product's one multiply-add onto
    # zero gives it (so -0 becomes +0), then the usual write-back: bias and identity or relu,
    # relu's gradient against stored activations, accumulation into C; every row and column
    # remainder around the write-back's tiles (MR rows, 256 bytes of columns), operands read
    # through strides, 1 and 2 threads.
    rng = np.random.default_rng(31)
    gemm = GEMM[dtype]
    uint = np.uint32 if dtype == np.float32 else np.uint64
    for m, n in itertools.product((1, 5, 6, 12, 13, 100, 301), (5, 16, 17, 32, 50, 64, 65, 129, 300)):
        a0 = rng.standard_normal((m, 1)).astype(dtype)
        b0 = rng.standard_normal((1, n)).astype(dtype)
        a0[::4] = dtype(-0.0)
        b0[0, ::3] = 0
        bias = rng.standard_normal(n).astype(dtype)
        c0 = rng.standard_normal((m, n)).astype(dtype)
        stored = np.maximum(rng.standard_normal((m, n)), 0).astype(dtype)
        plain = a0 * b0 + dtype(0)  # (each product rounded once; -0 + +0 is +0)
        assert ((a0 * b0 == 0) & np.signbit(a0 * b0)).any()
        for a, b, threads in itertools.product(list(layouts(a0))[::2], layouts(b0), (1, 2)):
            what = f"{isa} m={m} n={n} threads={threads} strides {a.strides} {b.strides}"
            cases = (
                (gemm(a, b, n_threads=threads), plain),
                (gemm(a, b, c=c0.copy(), n_threads=threads), plain + c0),
                (gemm(a, b, n_threads=threads, epilogue="bias_activation", activation="identity", bias=bias),
                 plain + bias),
                (gemm(a, b, c=c0.copy(), n_threads=threads, epilogue="bias_activation", activation="relu",
                      bias=bias), np.maximum((plain + c0) + bias, 0) + dtype(0)),
                (gemm(a, b, n_threads=threads, epilogue="activation_grad", activation="relu", aux=stored),
                 np.where(stored == 0, dtype(0), plain)),
            )
            for i, (got, want) in enumerate(cases):
                np.testing.assert_array_equal(got.view(uint), want.astype(dtype).view(uint), err_msg=f"{what} case {i}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_short_inputs_match_full_tiles(isa, dtype):
    # Fewer rows than a micro-tile run a kernel of their own (groups of rows with their chains
    # in registers, column blocks with a partial last vector): each row's result must be the
    # micro-tile's bit for bit, for every group size, column-block remainder, depth block and
    # A layout (row-major, column-major, strided), on one and two threads, with the bias and
    # activation epilogue, the activation-gradient epilogue and accumulation into C too.
    # (k = 600: several depth blocks; 96 and 192 columns: whole blocks of the most vectors one
    # row keeps, 12, for float32 and float64 on AVX2 and AVX-512; 300 and 100: blocks of 10 + 9,
    # 7 + 6 vectors)
    shapes = [(n, 600 if n in (70, 300) else 97)
              for n in (1, 5, 8, 17, 33, 64, 70, 96, 100, 129, 192, 300)]
    assert_last_rows_match_full_tiles(isa, dtype, 10, shapes, 24, range(1, 12))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_edge_panels_match_full_tiles(isa, dtype):
    # A last row panel shorter than MR (AVX2 and AVX-512: the kernel on those rows alone, A read
    # in place; the portable kernel: a zero-padded packed panel) must give each row the bits of
    # a full tile, for every remainder of MR in {4, 6, 12}, column remainders of half and whole
    # vectors, one and several depth blocks, every A layout, every epilogue, one and two threads.
    assert_last_rows_match_full_tiles(isa, dtype, 12, [(5, 97), (12, 600), (50, 300), (33, 40)],
                                      48, range(13, 36))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_edge_columns_match_full_tiles(isa, dtype):
    # A last column panel narrower than NR (half-width; on AVX2 and AVX-512 at most a quarter:
    # a half vector; on AVX-512 at most three quarters: a vector and a half) must give each
    # column the bits it gets inside full panels: the first n
    # columns of a 64-column product, for every n up to 64 (every remainder of NR in {8, 16,
    # 32}), full and short row panels, every A layout, every epilogue, one and two threads.
    # (From NR / 8 columns down, C is computed column by column: test_narrow_products_match.)
    # A is read in place (row- and column-major), packed (strided), or packed panel by panel
    # (200 column-major rows: row bands, as in a weight gradient); odd and even numbers of full
    # row panels.
    rng = np.random.default_rng(17)
    gemm = GEMM[dtype]
    wide = 64
    nr = {"generic": 16, "avx2": 16, "avx512": 32}[isa] // (2 if dtype == np.float64 else 1)
    for m, k in ((50, 50), (13, 8), (6, 300), (8, 1), (30, 7), (200, 20)):
        b = rng.standard_normal((k, wide)).astype(dtype)
        bias = rng.standard_normal(wide).astype(dtype)
        aux = rng.standard_normal((m, wide)).astype(dtype)
        c0 = rng.standard_normal((m, wide)).astype(dtype)
        base = rng.standard_normal((m, k)).astype(dtype)
        for a in (*layouts(base), np.repeat(base, 2, axis=1)[:, ::2]):
            full = epilogue_products(gemm, a, b, bias, aux, c0, threads=1)
            for n in range(nr // 8 + 1, wide):
                cols = np.s_[:, :n]
                for threads in (1, 2):
                    got = epilogue_products(gemm, a, np.ascontiguousarray(b[cols]), bias[:n],
                                            np.ascontiguousarray(aux[cols]),
                                            np.ascontiguousarray(c0[cols]), threads)
                    for kind, value in got.items():
                        np.testing.assert_array_equal(
                            value, full[kind][cols],
                            err_msg=f"{isa} m={m} n={n} k={k} {kind} threads={threads}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_edge_write_backs_stay_in_their_columns(isa, dtype):
    # An edge tile's write-back (on AVX-512 with masked loads and stores over the tile's whole
    # width) writes its nr columns and nothing past them: out= is the start of a larger buffer
    # whose elements after the product keep their bits, for every epilogue, edge widths of every
    # remainder of NR in {8, 16, 32}, full and short row panels, 1 and 2 threads.
    rng = np.random.default_rng(23)
    gemm = GEMM[dtype]
    sentinel = dtype(-7.25)
    for m, k in ((50, 50), (13, 8), (1, 30), (200, 20)):
        for n in (5, 9, 12, 18, 27, 33, 41, 50, 63):
            a = rng.standard_normal((m, k)).astype(dtype)
            b = rng.standard_normal((k, n)).astype(dtype)
            bias = rng.standard_normal(n).astype(dtype)
            aux = rng.standard_normal((m, n)).astype(dtype)
            w = rng.standard_normal((k, n)).astype(dtype)
            c0 = rng.standard_normal((m, n)).astype(dtype)
            cases = {
                "plain": ((a, b), {}),
                "relu": ((a, b), {"epilogue": "bias_activation", "activation": "relu", "bias": bias}),
                "tanh grad": ((a, b), {"epilogue": "activation_grad", "activation": "tanh", "aux": aux}),
                "accumulate": ((a, b), {"c": c0}),
                "weight grad": ((a.T.copy(), aux), {"epilogue": "weight_grad", "aux": w, "alpha": 0.5,
                                                     "scale": 0.25}),
            }
            for kind, (ops, kw) in cases.items():
                shape = (ops[0].shape[0], ops[1].shape[1])
                for threads in (1, 2):
                    want = gemm(*ops, n_threads=threads, **kw)
                    buf = np.full(shape[0] * shape[1] + 64, sentinel, dtype)
                    out = buf[:shape[0] * shape[1]].reshape(shape)
                    gemm(*ops, n_threads=threads, out=out, **kw)
                    what = f"{isa} m={m} n={n} k={k} {kind} threads={threads}"
                    np.testing.assert_array_equal(out, want, err_msg=what)
                    assert (buf[out.size:] == sentinel).all(), what


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_narrow_products_match(isa, dtype):
    # C of at most NR / 8 columns (a single output) is computed column by column; with a
    # column-major A (the output layer's weight gradient) in bands of 8 MR rows. A row's bits
    # must not depend on the band it falls in, on the rows computed with it or on the threads;
    # the fused column sum adds B's rows in order.
    rng = np.random.default_rng(19)
    gemm = GEMM[dtype]
    nr = {"generic": 16, "avx2": 16, "avx512": 32}[isa] // (2 if dtype == np.float64 else 1)
    m = 200
    for n in range(1, nr // 8 + 1):
        for k in (1, 50, 300):
            base = rng.standard_normal((m, k)).astype(dtype)
            b = rng.standard_normal((k, n)).astype(dtype)
            bias = rng.standard_normal(n).astype(dtype)
            aux = rng.standard_normal((m, n)).astype(dtype)
            c0 = rng.standard_normal((m, n)).astype(dtype)
            a = np.asfortranarray(base)
            full = epilogue_products(gemm, a, b, bias, aux, c0, threads=1)
            check_close(full["plain"], base.astype(np.float64) @ b.astype(np.float64), k, dtype,
                        f"{isa} n={n} k={k}")
            for threads in (2, 3):
                got = epilogue_products(gemm, a, b, bias, aux, c0, threads=threads)
                for kind, value in got.items():
                    np.testing.assert_array_equal(value, full[kind],
                                                  err_msg=f"{isa} n={n} k={k} {kind} threads={threads}")
            # (bands end at rows 32, 48 or 96 with MR 4, 6, 12; one row alone has no layout, so
            # its product is a row-major dot product)
            for rows in (np.s_[0:5], np.s_[30:34], np.s_[45:53], np.s_[47:49], np.s_[90:200],
                         np.s_[195:200]):
                got = epilogue_products(gemm, np.asfortranarray(base[rows]), b, bias,
                                        np.ascontiguousarray(aux[rows]),
                                        np.ascontiguousarray(c0[rows]), threads=1)
                for kind, value in got.items():
                    np.testing.assert_array_equal(value, full[kind][rows],
                                                  err_msg=f"{isa} n={n} k={k} {kind} rows={rows}")
            sums = np.add.accumulate(b, axis=0)[-1] * dtype(0.5)  # (in order, in dtype)
            for threads in (1, 2):
                _, cs = gemm(a, b, epilogue="weight_grad", aux=aux, alpha=0.1, scale=0.5,
                             colsum=True, n_threads=threads)
                np.testing.assert_array_equal(cs, sums, err_msg=f"{isa} n={n} k={k} colsum")


def teams_match_one_thread(gemm, rng, m, n, k, dtype, label):
    """Random operands of an m x n x k product: each of epilogue_products' epilogues on 2 and 3
    threads gives the one-thread product bit for bit. Returns the operands and the one-thread
    products."""
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    bias = rng.standard_normal(n).astype(dtype)
    aux = rng.standard_normal((m, n)).astype(dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    one = epilogue_products(gemm, a, b, bias, aux, c0, threads=1)
    for threads in (2, 3):
        got = epilogue_products(gemm, a, b, bias, aux, c0, threads=threads)
        for kind, value in got.items():
            np.testing.assert_array_equal(value, one[kind], err_msg=f"{label} {kind} threads={threads}")
    return a, b, aux, one


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_split_of_few_columns_matches_one_thread(isa, dtype):
    # Rows that outnumber the column panels four times over and split more evenly than the
    # columns' half panels go to the threads as row bands (a batch of 200 rows through a
    # 100-unit layer); around that rule (97 rows: columns on two AVX-512 threads; 64 columns:
    # two whole AVX-512 panels) 2 and 3 threads give the one-thread product bit for bit.
    rng = np.random.default_rng(17)
    for m, n in itertools.product((97, 200, 260), (20, 33, 64, 100, 130)):
        teams_match_one_thread(GEMM[dtype], rng, m, n, 300, dtype, f"{isa} m={m} n={n}")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_column_split_matches_one_thread(isa, dtype):
    # Threads split C's columns at half panels (a thread may end on a half-width panel that is
    # not C's last): every column count up to 69 (four AVX2 float32 panels, two AVX-512 ones;
    # from 17 columns the product is large enough for a team), 100, 150 and the epoch's 300
    # must give 2 and 3 threads the one-thread product bit for bit, with
    # every epilogue, the weight gradient's column sum, and one and several depth blocks.
    rng = np.random.default_rng(13)
    gemm = GEMM[dtype]
    m = 40  # few row panels against the columns: the threads take columns, not rows
    for n in list(range(1, 70)) + [100, 150, 300, 301]:
        k = 600 if n % 3 == 0 else 200
        a, b, aux, one = teams_match_one_thread(gemm, rng, m, n, k, dtype, f"{isa} n={n} k={k}")
        wg1, cs1 = gemm(a, b, epilogue="weight_grad", aux=aux, alpha=0.1, scale=0.5, colsum=True,
                        n_threads=1)
        for threads in (2, 3):
            wg, cs = gemm(a, b, epilogue="weight_grad", aux=aux, alpha=0.1, scale=0.5, colsum=True,
                          n_threads=threads)
            np.testing.assert_array_equal(wg, wg1, err_msg=f"{isa} n={n} weight_grad threads={threads}")
            np.testing.assert_array_equal(cs, cs1, err_msg=f"{isa} n={n} colsum threads={threads}")
        check_close(one["plain"], a.astype(np.float64) @ b.astype(np.float64), k, dtype, f"{isa} n={n}")


def test_bad_arguments():
    a = np.ones((3, 4), np.float32)
    with pytest.raises(ValueError, match="inner dimensions"):
        _cpu.gemm_f32(a, np.ones((5, 2), np.float32))
    with pytest.raises(TypeError):
        _cpu.gemm_f32(a, np.ones((4, 2), np.float64))
    with pytest.raises(ValueError, match="unknown"):
        _cpu.gemm_f32(a, np.ones((4, 2), np.float32), epilogue="nope")
    with pytest.raises(ValueError):
        _cpu.gemm_f32(a, np.ones((4, 2), np.float32), epilogue="bias_activation", activation="softmax", bias=np.ones(2))
    with pytest.raises(ValueError, match="instruction set"):
        _cpu.set_isa("sse9")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_transpose(isa, dtype):
    # The row-block trainer's W^T copies: vector blocks of 8 x 8 floats or 4 x 4 doubles with AVX
    # and element-by-element edges; every remainder of both sides, and the shapes of
    # California housing's layers.
    transpose = _cpu._transpose_f32 if dtype == np.float32 else _cpu._transpose_f64
    rng = np.random.default_rng(0)
    shapes = [(r, c) for r in range(1, 18) for c in range(1, 18)]
    shapes += [(8, 50), (50, 50), (50, 1), (784, 300), (0, 5), (5, 0)]
    for rows, cols in shapes:
        a = rng.standard_normal((rows, cols)).astype(dtype)
        before = a.copy()
        t = transpose(a)
        assert t.dtype == dtype and t.shape == (cols, rows)
        np.testing.assert_array_equal(t, a.T)
        np.testing.assert_array_equal(a, before)
    with pytest.raises(ValueError, match="2-D"):
        transpose(np.zeros(3, dtype=dtype))


# (m, n, k) of every path of the product: fewer rows than a tile (one-row predictions), at most
# NR/8 columns (a narrow layer; one column is narrow on every instruction set), depth one, row
# bands and column panels on a team, several row blocks of either, a row-major B read in place (a
# few row panels), several depth blocks, edge tiles of both dimensions, depths shorter than the
# check's vectors. (The wrapper runs products below 64K multiply-adds per thread on one thread:
# the larger shapes take the team's paths.)
CHECK_SHAPES = [(1, 300, 784), (5, 100, 300), (11, 10, 450), (13, 3, 200), (97, 2, 450),
                (400, 4, 257), (300, 33, 1), (4096, 64, 1), (2000, 1, 300), (40, 300, 600),
                (97, 100, 300), (400, 20, 257), (2000, 20, 300), (120, 300, 450), (25, 49, 7),
                (12, 32, 256)]


def check_layouts(a):
    """layouts(a) and a view whose elements are two items apart, NaN between them (a packed
    A: a check reading the gaps would report a finite A)."""
    yield from layouts(a)
    gaps = np.full((a.shape[0], 2 * a.shape[1]), np.nan, a.dtype)
    gaps[:, ::2] = a
    yield gaps[:, ::2]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_check_finds_every_nan_and_infinity(isa, dtype):
    # The input check a prediction's first layer runs during its product (check_a): a NaN or an
    # infinity anywhere in A, in any layout, on one to three threads, is reported; a finite A is
    # not, even where its products overflow; and C is the product's without the check, bit for
    # bit. A product without columns still checks A. (Each of five places gets one of the three
    # values, in every layout, with the plain epilogue: the check does not depend on the value or
    # the epilogue; kept small for the sanitizers' run of this file.)
    rng = np.random.default_rng(23)
    gemm = GEMM[dtype]
    huge = np.finfo(dtype).max / 4
    for m, n, k in CHECK_SHAPES:
        a0 = rng.standard_normal((m, k)).astype(dtype)
        a0[m // 3, k // 2] = huge  # (finite; its products with |b| > 4 overflow)
        b = (4 * rng.standard_normal((k, n))).astype(dtype)
        bias = rng.standard_normal(n).astype(dtype)
        spots = sorted({(0, 0), (m - 1, k - 1), (m // 2, k // 3), (m - 1, 0), (0, k - 1)})
        for threads in (1, 2, 3):
            for kw in ({}, dict(epilogue="bias_activation", activation="relu", bias=bias)):
                for a in check_layouts(a0):
                    want = gemm(a, b, n_threads=threads, **kw)
                    got, bad = gemm(a, b, n_threads=threads, check_a=True, **kw)
                    label = f"{isa} m={m} n={n} k={k} threads={threads} {kw.get('activation')}"
                    assert not bad, label
                    np.testing.assert_array_equal(got, want, err_msg=label)
            for spot, (i, p) in enumerate(spots):
                bad_a = a0.copy()
                bad_a[i, p] = value = (np.nan, np.inf, -np.inf)[spot % 3]
                for a in check_layouts(bad_a):
                    got, bad = gemm(a, b, n_threads=threads, check_a=True)
                    assert bad, f"{isa} m={m} n={n} k={k} threads={threads} A[{i}, {p}]={value}"
    a = rng.standard_normal((7, 5)).astype(dtype)
    assert not gemm(a, np.ones((5, 0), dtype), check_a=True)[1]
    a[6, 4] = np.nan
    assert gemm(a, np.ones((5, 0), dtype), check_a=True)[1]
    # rows that overlap, 150 items apart and 300 long (two depth blocks of 150 on every
    # instruction set): the second block's columns of the last row are nobody else's
    for m, n in ((1, 300), (40, 300), (400, 20)):
        buf = rng.standard_normal((m + 1) * 150).astype(dtype)
        a = np.lib.stride_tricks.as_strided(buf, (m, 300), (150 * buf.itemsize, buf.itemsize))
        b = rng.standard_normal((300, n)).astype(dtype)
        for threads in (1, 2):
            assert not gemm(a, b, n_threads=threads, check_a=True)[1], (m, n, threads)
            buf[-1] = np.nan  # A[m - 1, 299] alone
            assert gemm(a, b, n_threads=threads, check_a=True)[1], (m, n, threads)
            buf[-1] = 0.0
