// CPU GEMM with fused epilogues: the one matrix-multiply entry point of the CPU engine.
//
//   C (m x n, row stride ldc) := epilogue(A (m x k) * B (k x n) [+ C if accumulate])
//
// Operands are strided views, so the three training products X W, A^T dZ and dZ W^T need no
// explicit transposes: packing reads whichever layout it is given. The work is split into
// three layers (BLIS): packing (gemm_impl.h), one micro-kernel per instruction set
// (ukernel_*.h) and the blocking loops (gemm_impl.h), compiled once per instruction set and
// chosen at run time (dispatch.cpp). Block sizes live in one table (blocking.h).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "fusedmlp/activation.h"
#include "fusedmlp/common.h"
#include "fusedmlp/dropout.h"
#include "fusedmlp/optimizer.h"

namespace fusedmlp {
namespace cpu {

// element (i, p) = data[i * rs + p * cs]
template <class T>
struct Operand {
  const T* data;
  index_t rs;
  index_t cs;
  // B only, optional: the same matrix packed once by gemm_pack_b (for the active instruction
  // set, the same n and k), for products that read one B many times (a prediction's slices).
  // gemm_team then reads the panels it would have packed there, where its thread's columns
  // start on a panel and no column sum is asked; it packs them from data as usual otherwise.
  // What it reads from data in any case stays so: fewer rows than a tile, the full panels of a
  // product of a few row panels (B_IN_PLACE_PANELS), C of at most NR/8 columns, a product of
  // depth one. Same arithmetic either way.
  const T* packed = nullptr;
  // With packed: every value of B is finite (gemm_pack_b's report).
  bool packed_finite = false;
  // A product with a bias and activation (a prediction's) leaves out the all-zero steps of a
  // row-major A's panels (gemm_impl.h) where B is finite, since those zeros times a NaN or
  // infinity of B would carry it to C: B packed beforehand when packed_finite says so; B packed
  // by the product, where the panels each thread packs prove finite. (Depth blocks of at least
  // kRowSkipMinDepth steps whose first panels have steps to leave out: gemm_impl.h.)
  bool zero_steps = false;
};

enum class EpilogueKind : int {
  none = 0,             // C = AB
  bias_activation = 1,  // C = act(AB + bias[j]) [* dropout mask]     forward (z kept in
                        //   hidden.pre when that is set)
  weight_grad = 2,      // C = (AB + alpha * aux[i, j]) * scale       dW with the L2 term
  activation_grad = 3,  // C = AB [* mask] * act'(aux[i, j])          dA_prev -> dZ_prev; aux is
                        //   a, or z when aux_is_pre
  // g = (AB + alpha * W[i, j]) * scale applied at once by the optimizer to W (= aux, updated
  // in place) and its state; g itself is not stored (C is only scratch between k blocks).
  // Sets sq_rows[i] = sum_j W_new(i, j)^2. The weight gradient fused with the optimizer step.
  weight_update_adam = 4,
  weight_update_sgd = 5,
};

template <class T>
struct Epilogue {
  EpilogueKind kind = EpilogueKind::none;
  Activation act = Activation::identity;
  // bias_activation, activation_grad: the activation's parameter, the pre-activations' buffer
  // and the dropout mask (fusedmlp/dropout.h); rows of C are the mask's rows
  HiddenUnits<T> hidden{};
  bool aux_is_pre = false;  // activation_grad: aux holds z (stored pre-activations), not a
  const T* bias = nullptr;
  const T* aux = nullptr;  // same shape as C, row stride ld_aux
  index_t ld_aux = 0;
  T alpha = T(0);
  T scale = T(1);
  // Optional fused column sum of B over k (the bias gradient when B = dZ):
  // colsum_b[j] (+)= colsum_scale * sum_p B(p, j), '+=' when accumulate.
  T* colsum_b = nullptr;
  T colsum_scale = T(1);
  // weight_update_*: the weights (aux, writable), optimizer state with the same layout as C
  T* w_update = nullptr;
  T* state_0 = nullptr;  // adam: m, sgd: velocity
  T* state_1 = nullptr;  // adam: v
  AdamStep<T> adam{};
  SgdStep<T> sgd{};
  // weight_update_*: sq_rows[i] := sum_j W_new(i, j)^2 for each row i of W (m entries), each row
  // summed in the same order whatever the team, so that a norm summed over the rows in order
  // has the same bits on any number of threads
  double* sq_rows = nullptr;
  // weight_update_*, optional: the biases, stepped with the fused column sum as gradient
  T* b_update = nullptr;
  T* b_state_0 = nullptr;
  T* b_state_1 = nullptr;
  // Optional, with any kind: *a_nonfinite := 1 (a relaxed atomic store) when an element of A is
  // NaN or infinite, left as it is otherwise. Each element of A is checked by one thread of the
  // team, after the product's kernels have read it: a block of A after its first column panel's
  // tiles (the team's threads a share of its rows each), a row band's panel after its tiles, a
  // short input's depth block after its rows; a narrow or depth-one product's rows after the
  // thread's share of them; without columns (n = 0), by the first thread alone. A prediction's
  // input check.
  int* a_nonfinite = nullptr;
};

// The threads that run one GEMM together: every thread of an OpenMP parallel region calls
// gemm_team with its own tid, or one thread calls it alone (Team::solo). `slot` is the
// thread's own scratch in the workspace: its tid in the region, also when it works alone.
struct Team {
  int tid = 0;
  int nth = 1;
  int slot = 0;
  Team() = default;
  Team(int tid_, int nth_) : tid(tid_), nth(nth_), slot(tid_) {}
  static Team solo(int slot) {
    Team t;
    t.slot = slot;
    return t;
  }
};

// Scratch memory for packing, owned by the caller (one per trainer or per call), never global.
class GemmWorkspace {
 public:
  GemmWorkspace();
  ~GemmWorkspace();
  GemmWorkspace(const GemmWorkspace&) = delete;
  GemmWorkspace& operator=(const GemmWorkspace&) = delete;
  // Makes room for n_threads threads with at least `bytes` each. Call it before a parallel
  // region: inside one, per_thread() only hands out what was reserved.
  void reserve(int n_threads, std::size_t bytes);
  // The 64-byte aligned buffer of one thread, grown to `bytes` if needed (outside a region).
  void* per_thread(int thread, std::size_t bytes);

 private:
  struct Buffer;
  std::vector<std::unique_ptr<Buffer>> threads_;
};

// Steps of A panels the kernels skipped as all zeros (compact_zero_steps, row_panel_kept_steps,
// gemm_impl.h), so far in this process: [0] of column-major panels, [1] of row-major ones
// (fusedmlp._cpu._skipped_zero_steps(), for tests). Added to with __atomic_fetch_add, read with
// __atomic_load_n: gemm_impl.h calls no standard-library template.
inline long long skipped_zero_steps[2] = {0, 0};

// Checks the arguments (throws std::invalid_argument), then runs a team of up to n_threads.
template <class T>
void gemm(index_t m, index_t n, index_t k, Operand<T> a, Operand<T> b, T* c, index_t ldc,
          const Epilogue<T>& ep, bool accumulate, int n_threads, GemmWorkspace& ws);

// The same GEMM as one member of a team: splits the work by team.tid, never synchronises
// and never throws (arguments are checked by the caller, e.g. with check_gemm). Threads the
// product is too small for return at once. The caller places a barrier between dependent
// calls and reserves ws beforehand (gemm_scratch_bytes).
template <class T>
void gemm_team(const Team& team, index_t m, index_t n, index_t k, Operand<T> a, Operand<T> b,
               T* c, index_t ldc, const Epilogue<T>& ep, bool accumulate, GemmWorkspace& ws);

template <class T>
void check_gemm(index_t m, index_t n, index_t k, const Epilogue<T>& ep);

// Scratch bytes per thread gemm_team needs for this shape (whatever the team size and the
// operands' layouts).
template <class T>
std::size_t gemm_scratch_bytes(index_t m, index_t n, index_t k);

// One optimizer step over n parameters whose gradient is a sum of partial gradients (the row
// blocks of a batch): g = (sum_b partial[b * stride + i] + alpha * p[i]) * scale, then the Adam
// or SGD step of p[i] and its state. Vectorized for the active instruction set.
template <class T>
struct OptimizerPass {
  bool adam = true;
  AdamStep<T> adam_step{};
  SgdStep<T> sgd_step{};
  const T* partial = nullptr;  // the first partial gradient of these n parameters
  index_t stride = 0;          // distance between partial gradients
  index_t n_partials = 1;
  // optional: the partials in pairs (2j, 2j + 1), summed pair after pair, each pair's sum
  // rounded once: when split_pairs[j] is 0, partial 2j already holds it (partial 2j + 1 is not
  // read), else it is partial 2j + partial 2j + 1 (a last partial of odd count is its own pair)
  const unsigned char* split_pairs = nullptr;
  T alpha = T(0);
  T scale = T(1);
  // optional: chunk_sq[c] := the new parameters' squares of chunk c (kSqChunk parameters from
  // the first, the last one shorter), for a norm that does not depend on how the parameters
  // are split between threads when each thread's range starts on a chunk
  double* chunk_sq = nullptr;
};

// Parameters per chunk of optimizer_pass's squared norm.
constexpr index_t kSqChunk = 64;

template <class T>
void optimizer_pass(T* params, T* state_0, T* state_1, index_t n, const OptimizerPass<T>& pass);

// dst (cols x rows, row-major) := the transpose of src (rows x cols, row-major), vectorized for
// the active instruction set; src and dst do not overlap.
template <class T>
void gemm_transpose(index_t rows, index_t cols, const T* src, T* dst);

// Rows [i0, i1) of a hidden layer's forward from its two half-depth products (n units a row):
// out := act((out + second) + b), z kept in hidden.pre and units dropped as the GEMM's forward
// write-back does; vectorized for the active instruction set.
template <class T>
void halves_sum(index_t i0, index_t i1, index_t n, T* out, const T* second, const T* b,
                Activation act, const HiddenUnits<T>& hidden);

// Elements of B (k x n) packed by gemm_pack_b for the active instruction set.
template <class T>
std::size_t gemm_packed_b_elems(index_t n, index_t k);

// dst := B (k x n) as gemm_team packs it (every panel of every depth block, the edge panel
// zero-padded), the panels split across the team; a barrier before the products read it. dst
// holds gemm_packed_b_elems(n, k) elements, 64-byte aligned for the fastest reads. nonfinite,
// optional: *nonfinite := 1 (a relaxed atomic store) when a column's sum over a depth block is
// not finite (a NaN or infinity of B, or finite values whose sum overflows), left as it is
// otherwise: 0 proves B finite (Operand::packed_finite).
template <class T>
void gemm_pack_b(const Team& team, index_t n, index_t k, Operand<T> b, T* dst,
                 int* nonfinite = nullptr);

// Rows of the active micro-kernel's tile (MR): row blocks that are multiples of it have no
// short edge panel.
template <class T>
int gemm_tile_rows();

// The most rows of A for which the active kernel reads the full-width panels of a row-major B in
// place (B_IN_PLACE_PANELS row panels, blocking.h): a product of at most so many rows packs no B.
template <class T>
int gemm_in_place_rows();

// Instruction sets with their own micro-kernels.
enum class Isa : int { generic = 0, avx2 = 1, avx512 = 2 };

Isa best_supported_isa();  // what this CPU can run
Isa active_isa();          // what gemm() uses now
void set_active_isa(Isa isa);  // throws if the CPU cannot run it (tests, benchmarks)
std::string isa_name(Isa isa);
Isa isa_from_name(const std::string& name);

}  // namespace cpu
}  // namespace fusedmlp
