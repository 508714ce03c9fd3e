// Run-time choice of the GEMM's instruction set, argument checks, and the workspace.
#include <omp.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <stdexcept>

#include "cpu/gemm/blocking.h"
#include "cpu/gemm/gemm.h"
#include "cpu/threads.h"

#if defined(FUSEDMLP_X86) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif

namespace fusedmlp {
namespace cpu {

#define FUSEDMLP_DECLARE_ISA(ns)                                                                \
  namespace ns {                                                                                \
  template <class T>                                                                            \
  void gemm_team(const Team& team, index_t m, index_t n, index_t k, Operand<T> a, Operand<T> b, \
                 T* c, index_t ldc, const Epilogue<T>& ep, bool accumulate, GemmWorkspace& ws); \
  template <class T>                                                                            \
  std::size_t gemm_scratch_bytes(index_t m, index_t n, index_t k);                             \
  template <class T>                                                                            \
  void optimizer_pass(T* params, T* state_0, T* state_1, index_t n,                           \
                        const OptimizerPass<T>& pass);                                          \
  template <class T>                                                                            \
  std::size_t gemm_packed_b_elems(index_t n, index_t k);                                       \
  template <class T>                                                                            \
  void gemm_pack_b(const Team& team, index_t n, index_t k, Operand<T> b, T* dst,               \
                   int* nonfinite);                                                            \
  template <class T>                                                                            \
  void gemm_transpose(index_t rows, index_t cols, const T* src, T* dst);                        \
  template <class T>                                                                            \
  void halves_sum(index_t i0, index_t i1, index_t n, T* out, const T* second, const T* b,       \
                  Activation act, const HiddenUnits<T>& hidden);                                \
  }
FUSEDMLP_DECLARE_ISA(isa_generic)
#if defined(FUSEDMLP_X86)
FUSEDMLP_DECLARE_ISA(isa_avx2)
FUSEDMLP_DECLARE_ISA(isa_avx512)
#endif
#undef FUSEDMLP_DECLARE_ISA

// ---- workspace -------------------------------------------------------------------------------

struct GemmWorkspace::Buffer {
  void* data = nullptr;
  std::size_t bytes = 0;
  ~Buffer() { std::free(data); }
  void* ensure(std::size_t want) {
    if (want <= bytes) return data;
    std::free(data);
    const std::size_t rounded = (want + 4095) / 4096 * 4096;
    data = std::aligned_alloc(64, rounded);
    if (data == nullptr) {
      bytes = 0;
      throw std::bad_alloc();
    }
    bytes = rounded;
    return data;
  }
};

GemmWorkspace::GemmWorkspace() = default;
GemmWorkspace::~GemmWorkspace() = default;

void GemmWorkspace::reserve(int n_threads, std::size_t bytes) {
  while (static_cast<int>(threads_.size()) < n_threads) threads_.emplace_back(new Buffer);
  for (int t = 0; t < n_threads; ++t) threads_[t]->ensure(bytes);
}

void* GemmWorkspace::per_thread(int thread, std::size_t bytes) {
  return threads_[thread]->ensure(bytes);
}

// ---- instruction sets ------------------------------------------------------------------------

#if defined(FUSEDMLP_X86) && (defined(__GNUC__) || defined(__clang__))
namespace {
// PREFETCHW (CPUID 0x80000001, ECX bit 8), which the AVX-512 objects are compiled with (the
// fused update requests its weights and optimizer state for writing)
bool has_prefetchw() {
  unsigned int a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid(0x80000001u, &a, &b, &c, &d) != 0 && (c & (1u << 8)) != 0;
}
}  // namespace
#endif

Isa best_supported_isa() {
#if defined(FUSEDMLP_X86) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
      __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("fma") && has_prefetchw())
    return Isa::avx512;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return Isa::avx2;
#endif
  return Isa::generic;
}

namespace {
std::atomic<int> g_active{-1};
}

Isa active_isa() {
  int v = g_active.load(std::memory_order_relaxed);
  if (v < 0) {
    v = static_cast<int>(best_supported_isa());
    g_active.store(v, std::memory_order_relaxed);
  }
  return static_cast<Isa>(v);
}

void set_active_isa(Isa isa) {
  if (static_cast<int>(isa) > static_cast<int>(best_supported_isa()))
    throw std::invalid_argument("this CPU cannot run the '" + isa_name(isa) +
                                "' kernels; the best it supports is '" +
                                isa_name(best_supported_isa()) + "'");
  g_active.store(static_cast<int>(isa), std::memory_order_relaxed);
}

std::string isa_name(Isa isa) {
  switch (isa) {
    case Isa::generic: return "generic";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
  }
  return "unknown";
}

Isa isa_from_name(const std::string& name) {
  if (name == "generic") return Isa::generic;
  if (name == "avx2") return Isa::avx2;
  if (name == "avx512") return Isa::avx512;
  throw std::invalid_argument("unknown instruction set '" + name +
                              "' (expected 'generic', 'avx2' or 'avx512')");
}

// ---- entry point -----------------------------------------------------------------------------

template <class T>
void check_gemm(index_t m, index_t n, index_t k, const Epilogue<T>& ep) {
  if (m < 0 || n < 0 || k < 0) throw std::invalid_argument("gemm: negative dimension");
  switch (ep.kind) {
    case EpilogueKind::none:
      break;
    case EpilogueKind::bias_activation:
    case EpilogueKind::activation_grad:
      check_hidden_activation(ep.act);
      if (ep.kind == EpilogueKind::bias_activation && ep.bias == nullptr)
        throw std::invalid_argument("gemm: bias_activation needs a bias");
      if (ep.kind == EpilogueKind::activation_grad && ep.aux == nullptr)
        throw std::invalid_argument("gemm: activation_grad needs the stored activations");
      if (ep.kind == EpilogueKind::bias_activation && ep.hidden.dropout() && ep.hidden.pre == nullptr)
        throw std::invalid_argument("gemm: dropout in the forward write-back keeps z: it needs hidden.pre");
      break;
    case EpilogueKind::weight_grad:
      if (ep.aux == nullptr) throw std::invalid_argument("gemm: weight_grad needs the weights");
      break;
    case EpilogueKind::weight_update_adam:
    case EpilogueKind::weight_update_sgd:
      if (ep.aux == nullptr || ep.w_update != ep.aux || ep.state_0 == nullptr ||
          (ep.kind == EpilogueKind::weight_update_adam && ep.state_1 == nullptr) ||
          ep.sq_rows == nullptr)
        throw std::invalid_argument("gemm: weight_update needs the weights, state and norm");
      if (ep.b_update != nullptr &&
          (ep.colsum_b == nullptr || ep.b_state_0 == nullptr ||
           (ep.kind == EpilogueKind::weight_update_adam && ep.b_state_1 == nullptr)))
        throw std::invalid_argument("gemm: the bias update needs the column sum and state");
      break;
    default:
      throw std::invalid_argument("gemm: unknown epilogue");
  }
}

template <class T>
void gemm_team(const Team& team, index_t m, index_t n, index_t k, Operand<T> a, Operand<T> b,
               T* c, index_t ldc, const Epilogue<T>& ep, bool accumulate, GemmWorkspace& ws) {
  switch (active_isa()) {
#if defined(FUSEDMLP_X86)
    case Isa::avx512:
      return isa_avx512::gemm_team<T>(team, m, n, k, a, b, c, ldc, ep, accumulate, ws);
    case Isa::avx2:
      return isa_avx2::gemm_team<T>(team, m, n, k, a, b, c, ldc, ep, accumulate, ws);
#endif
    default:
      return isa_generic::gemm_team<T>(team, m, n, k, a, b, c, ldc, ep, accumulate, ws);
  }
}

template <class T>
std::size_t gemm_scratch_bytes(index_t m, index_t n, index_t k) {
  switch (active_isa()) {
#if defined(FUSEDMLP_X86)
    case Isa::avx512:
      return isa_avx512::gemm_scratch_bytes<T>(m, n, k);
    case Isa::avx2:
      return isa_avx2::gemm_scratch_bytes<T>(m, n, k);
#endif
    default:
      return isa_generic::gemm_scratch_bytes<T>(m, n, k);
  }
}

template <class T>
void optimizer_pass(T* params, T* state_0, T* state_1, index_t n, const OptimizerPass<T>& pass) {
  switch (active_isa()) {
#if defined(FUSEDMLP_X86)
    case Isa::avx512:
      return isa_avx512::optimizer_pass<T>(params, state_0, state_1, n, pass);
    case Isa::avx2:
      return isa_avx2::optimizer_pass<T>(params, state_0, state_1, n, pass);
#endif
    default:
      return isa_generic::optimizer_pass<T>(params, state_0, state_1, n, pass);
  }
}

template <class T>
void gemm_transpose(index_t rows, index_t cols, const T* src, T* dst) {
  switch (active_isa()) {
#if defined(FUSEDMLP_X86)
    case Isa::avx512:
      return isa_avx512::gemm_transpose<T>(rows, cols, src, dst);
    case Isa::avx2:
      return isa_avx2::gemm_transpose<T>(rows, cols, src, dst);
#endif
    default:
      return isa_generic::gemm_transpose<T>(rows, cols, src, dst);
  }
}

template <class T>
void halves_sum(index_t i0, index_t i1, index_t n, T* out, const T* second, const T* b,
                Activation act, const HiddenUnits<T>& hidden) {
  switch (active_isa()) {
#if defined(FUSEDMLP_X86)
    case Isa::avx512:
      return isa_avx512::halves_sum<T>(i0, i1, n, out, second, b, act, hidden);
    case Isa::avx2:
      return isa_avx2::halves_sum<T>(i0, i1, n, out, second, b, act, hidden);
#endif
    default:
      return isa_generic::halves_sum<T>(i0, i1, n, out, second, b, act, hidden);
  }
}

template <class T>
std::size_t gemm_packed_b_elems(index_t n, index_t k) {
  switch (active_isa()) {
#if defined(FUSEDMLP_X86)
    case Isa::avx512:
      return isa_avx512::gemm_packed_b_elems<T>(n, k);
    case Isa::avx2:
      return isa_avx2::gemm_packed_b_elems<T>(n, k);
#endif
    default:
      return isa_generic::gemm_packed_b_elems<T>(n, k);
  }
}

template <class T>
void gemm_pack_b(const Team& team, index_t n, index_t k, Operand<T> b, T* dst, int* nonfinite) {
  switch (active_isa()) {
#if defined(FUSEDMLP_X86)
    case Isa::avx512:
      return isa_avx512::gemm_pack_b<T>(team, n, k, b, dst, nonfinite);
    case Isa::avx2:
      return isa_avx2::gemm_pack_b<T>(team, n, k, b, dst, nonfinite);
#endif
    default:
      return isa_generic::gemm_pack_b<T>(team, n, k, b, dst, nonfinite);
  }
}

// f(Blocking{}) for the active instruction set's blocking of T.
template <class T, class F>
int active_blocking(F f) {
  switch (active_isa()) {
#if defined(FUSEDMLP_X86)
    case Isa::avx512:
      return sizeof(T) == 4 ? f(BlockingAvx512F32{}) : f(BlockingAvx512F64{});
    case Isa::avx2:
      return sizeof(T) == 4 ? f(BlockingAvx2F32{}) : f(BlockingAvx2F64{});
#endif
    default:
      return sizeof(T) == 4 ? f(BlockingGenericF32{}) : f(BlockingGenericF64{});
  }
}

template <class T>
int gemm_tile_rows() {
  return active_blocking<T>([](auto b) { return decltype(b)::MR; });
}

template <class T>
int gemm_in_place_rows() {
  return active_blocking<T>(
      [](auto b) { return decltype(b)::MR * static_cast<int>(decltype(b)::B_IN_PLACE_PANELS); });
}

template <class T>
void gemm(index_t m, index_t n, index_t k, Operand<T> a, Operand<T> b, T* c, index_t ldc,
          const Epilogue<T>& ep, bool accumulate, int n_threads, GemmWorkspace& ws) {
  check_gemm<T>(m, n, k, ep);
  if (n_threads < 1) n_threads = 1;
  if (n_threads > 64) n_threads = 64;
  // A team only when the product is worth more than waking threads for.
  if (m * n * k < index_t(64) * 1024 * n_threads) n_threads = 1;
  n_threads = team_threads(n_threads);
  ws.reserve(n_threads, gemm_scratch_bytes<T>(m, n, k));
  if (n_threads == 1) {
    gemm_team<T>(Team{0, 1}, m, n, k, a, b, c, ldc, ep, accumulate, ws);
  } else {
#pragma omp parallel num_threads(n_threads)
    gemm_team<T>(Team{omp_get_thread_num(), omp_get_num_threads()}, m, n, k, a, b, c, ldc, ep,
                 accumulate, ws);
  }
}

#define FUSEDMLP_INSTANTIATE(T)                                                                   \
  template void gemm<T>(index_t, index_t, index_t, Operand<T>, Operand<T>, T*, index_t,            \
                        const Epilogue<T>&, bool, int, GemmWorkspace&);                           \
  template void gemm_team<T>(const Team&, index_t, index_t, index_t, Operand<T>, Operand<T>, T*,   \
                             index_t, const Epilogue<T>&, bool, GemmWorkspace&);                  \
  template void check_gemm<T>(index_t, index_t, index_t, const Epilogue<T>&);                      \
  template int gemm_tile_rows<T>();                                                                \
  template int gemm_in_place_rows<T>();                                                            \
  template void optimizer_pass<T>(T*, T*, T*, index_t, const OptimizerPass<T>&);                 \
  template void gemm_transpose<T>(index_t, index_t, const T*, T*);                             \
  template void halves_sum<T>(index_t, index_t, index_t, T*, const T*, const T*, Activation,     \
                              const HiddenUnits<T>&);                                            \
  template std::size_t gemm_scratch_bytes<T>(index_t, index_t, index_t);                       \
  template std::size_t gemm_packed_b_elems<T>(index_t, index_t);                               \
  template void gemm_pack_b<T>(const Team&, index_t, index_t, Operand<T>, T*, int*);
FUSEDMLP_INSTANTIATE(float)
FUSEDMLP_INSTANTIATE(double)
#undef FUSEDMLP_INSTANTIATE

}  // namespace cpu
}  // namespace fusedmlp
