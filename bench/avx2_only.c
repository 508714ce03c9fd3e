/* A process that sees an AVX2 + FMA CPU on an AVX-512 machine: every library in it picks its
 * AVX2 code, the peers' as well as fusedmlp's.
 *
 * FUSEDMLP_ISA=avx2 holds fusedmlp to its AVX2 kernels, and OPENBLAS_CORETYPE=Haswell holds
 * numpy's OpenBLAS to its Haswell kernels, but ONNX Runtime (MLAS), JAX (XLA's LLVM code and its
 * oneDNN / Eigen products) and PyTorch read the CPU's features themselves and keep their
 * AVX-512 code: an AVX2 target measured beside them compares AVX2 with AVX-512. Linux's CPUID
 * faulting (arch_prctl ARCH_SET_CPUID, the `cpuid_fault` flag in /proc/cpuinfo; KVM offers it to
 * its guests) makes every CPUID instruction of the process raise SIGSEGV. This library, loaded
 * first with LD_PRELOAD, turns faulting on in each process it is loaded into (the setting is a
 * thread's, inherited by the threads it starts, and reset by execve: the variable carries the
 * library into child processes), answers each CPUID in a SIGSEGV handler with the CPU's own
 * answer less the AVX-512, AMX and AVX-VNNI/IFMA feature bits, and steps over the instruction.
 * Every other SIGSEGV goes to the handler the program installed (which this library keeps aside
 * in `sigaction`), else kills the process as it would have.
 *
 *   gcc -O2 -shared -fPIC bench/avx2_only.c -o /tmp/avx2_only.so
 *   LD_PRELOAD=/tmp/avx2_only.so python -m fusedmlp.bench --data ../shared/data ...
 *
 * What it cannot hide: XCR0 (XGETBV) still enables the AVX-512 register state, and the C
 * library chose its string functions at start-up from the real CPUID (ld.so runs before any
 * preloaded library; GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX512F,... masks those). Code that
 * executes AVX-512 instructions without asking CPUID still runs them. Leaf 0xD (the XSAVE area's
 * sizes) is passed through unchanged on purpose: those sizes must match XCR0. When the CPU or
 * kernel lacks CPUID faulting the library prints why to stderr and changes nothing;
 * FUSEDMLP_AVX2_ONLY_VERBOSE=1 also reports each process it does mask. `python -m fusedmlp.bench`
 * names the mask in its machine line (it looks up fusedmlp_avx2_only_active). */
#define _GNU_SOURCE
#include <cpuid.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef ARCH_GET_CPUID
#define ARCH_GET_CPUID 0x1011
#define ARCH_SET_CPUID 0x1012
#endif

typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);

static sigaction_fn real_sigaction;
static struct sigaction program_segv;  /* the handler the program asked for (SIG_DFL at first) */
static volatile sig_atomic_t active;

static long arch_prctl(int code, unsigned long arg) { return syscall(SYS_arch_prctl, code, arg); }

/* The CPU's answer to CPUID(leaf, subleaf), taken with faulting off for this thread. */
static void real_cpuid(uint32_t leaf, uint32_t subleaf, uint32_t r[4]) {
  arch_prctl(ARCH_SET_CPUID, 1);
  __cpuid_count(leaf, subleaf, r[0], r[1], r[2], r[3]);
  arch_prctl(ARCH_SET_CPUID, 0);
}

/* The bits an AVX2 + FMA CPU (Haswell to Alder Lake's AVX-512-less parts, Zen 2 / 3) lacks. */
static void mask(uint32_t leaf, uint32_t subleaf, uint32_t r[4]) {
  if (leaf == 7 && subleaf == 0) {
    /* EBX: AVX512F 16, DQ 17, IFMA 21, PF 26, ER 27, CD 28, BW 30, VL 31 */
    r[1] &= ~((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) |
              (1u << 30) | (1u << 31));
    /* ECX: VBMI 1, VBMI2 6, VNNI 11, BITALG 12, VPOPCNTDQ 14 */
    r[2] &= ~((1u << 1) | (1u << 6) | (1u << 11) | (1u << 12) | (1u << 14));
    /* EDX: 4VNNIW 2, 4FMAPS 3, VP2INTERSECT 8, AMX-BF16 22, FP16 23, AMX-TILE 24, AMX-INT8 25 */
    r[3] &= ~((1u << 2) | (1u << 3) | (1u << 8) | (1u << 22) | (1u << 23) | (1u << 24) |
              (1u << 25));
  } else if (leaf == 7 && subleaf == 1) {
    /* EAX: AVX-VNNI 4, AVX512_BF16 5, AMX-FP16 21, AVX-IFMA 23; EDX: AVX-VNNI-INT8 4,
     * AVX-NE-CONVERT 5, AMX-COMPLEX 8, AVX10 19 */
    r[0] &= ~((1u << 4) | (1u << 5) | (1u << 21) | (1u << 23));
    r[3] &= ~((1u << 4) | (1u << 5) | (1u << 8) | (1u << 19));
  } else if (leaf == 0x24) {
    r[0] = r[1] = r[2] = r[3] = 0; /* AVX10's leaf */
  }
}

static void on_segv(int sig, siginfo_t *info, void *ctx_) {
  ucontext_t *ctx = (ucontext_t *)ctx_;
  greg_t *g = ctx->uc_mcontext.gregs;
  const unsigned char *ip = (const unsigned char *)g[REG_RIP];
  /* A CPUID fault is a SIGSEGV with si_code SI_KERNEL at a 0F A2 instruction. */
  if (info->si_code == SI_KERNEL && ip[0] == 0x0f && ip[1] == 0xa2) {
    uint32_t leaf = (uint32_t)g[REG_RAX], subleaf = (uint32_t)g[REG_RCX], r[4];
    real_cpuid(leaf, subleaf, r);
    mask(leaf, subleaf, r);
    g[REG_RAX] = r[0];
    g[REG_RBX] = r[1];
    g[REG_RCX] = r[2];
    g[REG_RDX] = r[3];
    g[REG_RIP] += 2;
    return;
  }
  /* Not ours: what the program asked for. */
  if (program_segv.sa_flags & SA_SIGINFO) {
    if (program_segv.sa_sigaction) {
      program_segv.sa_sigaction(sig, info, ctx_);
      return;
    }
  } else if (program_segv.sa_handler != SIG_DFL && program_segv.sa_handler != SIG_IGN) {
    program_segv.sa_handler(sig);
    return;
  }
  /* The default action: the fault happens again on return and kills the process. */
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  real_sigaction(SIGSEGV, &dfl, NULL);
}

/* 1 when this process's CPUID answers are masked. */
__attribute__((visibility("default"))) int fusedmlp_avx2_only_active(void) { return active; }

/* The program's SIGSEGV handlers are kept aside: ours stays installed and passes them every
 * fault that is not a CPUID. */
int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
  if (!real_sigaction) real_sigaction = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
  if (sig != SIGSEGV || !active) return real_sigaction(sig, act, old);
  if (old) *old = program_segv;
  if (act) program_segv = *act;
  return 0;
}

/* glibc's signal() does not go through the exported sigaction. */
sighandler_t signal(int sig, sighandler_t handler) {
  if (sig != SIGSEGV || !active) {
    struct sigaction a, o;
    memset(&a, 0, sizeof a);
    a.sa_handler = handler;
    a.sa_flags = SA_RESTART;
    sigemptyset(&a.sa_mask);
    if (sigaction(sig, &a, &o) != 0) return SIG_ERR;
    return o.sa_handler;
  }
  sighandler_t previous = (program_segv.sa_flags & SA_SIGINFO) ? SIG_DFL : program_segv.sa_handler;
  memset(&program_segv, 0, sizeof program_segv);
  program_segv.sa_handler = handler;
  return previous;
}

__attribute__((constructor(101))) static void start(void) {
  const char *verbose = getenv("FUSEDMLP_AVX2_ONLY_VERBOSE");
  real_sigaction = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
  if (arch_prctl(ARCH_GET_CPUID, 0) < 0) {
    fprintf(stderr, "avx2_only: this kernel or CPU has no CPUID faulting; nothing masked\n");
    return;
  }
  struct sigaction a;
  memset(&a, 0, sizeof a);
  a.sa_sigaction = on_segv;
  a.sa_flags = SA_SIGINFO | SA_NODEFER;
  sigemptyset(&a.sa_mask);
  real_sigaction(SIGSEGV, &a, &program_segv);
  if (arch_prctl(ARCH_SET_CPUID, 0) != 0) {
    real_sigaction(SIGSEGV, &program_segv, NULL);
    fprintf(stderr, "avx2_only: ARCH_SET_CPUID failed; nothing masked\n");
    return;
  }
  active = 1;
  if (verbose && *verbose == '1')
    fprintf(stderr, "avx2_only: CPUID answers without AVX-512/AMX in process %d\n", (int)getpid());
}
