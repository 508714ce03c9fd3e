/* A process that sees an AVX2 + FMA CPU on an AVX-512 machine: the libraries it loads pick their
 * AVX2 code, the peers' as well as fusedmlp's.
 *
 * FUSEDMLP_ISA=avx2 holds fusedmlp to its AVX2 kernels and OPENBLAS_CORETYPE=Haswell holds
 * numpy's OpenBLAS to its Haswell kernels. PyTorch (ATEN_CPU_CAPABILITY), oneDNN
 * (ONEDNN_MAX_CPU_ISA) and XLA have switches of their own, each spelled differently and each
 * covering part of the library; ONNX Runtime's MLAS has none and keeps its AVX-512 code. Linux's
 * CPUID faulting (arch_prctl ARCH_SET_CPUID, the `cpuid_fault` flag in /proc/cpuinfo; KVM offers
 * it to its guests) makes every CPUID instruction of a thread raise SIGSEGV. This library, loaded
 * with LD_PRELOAD, turns faulting on when it is loaded (the setting is a thread's, inherited by the
 * threads it starts and by fork, reset by execve: LD_PRELOAD carries the library into child
 * processes), answers each CPUID in a SIGSEGV handler with the CPU's own answer less the AVX-512,
 * AMX, AVX10 and VEX-encoded VNNI / IFMA / NE-CONVERT feature bits (the features of Haswell to
 * Zen 3), and steps over the instruction. Other SIGSEGVs go to the handler the program installed
 * through sigaction() or signal() (kept aside by the interposers below, with its mask and
 * SA_RESETHAND honoured), else take the default action.
 *
 *   gcc -O2 -shared -fPIC bench/avx2_only.c -o /tmp/avx2_only.so
 *   LD_PRELOAD=/tmp/avx2_only.so python -m fusedmlp.bench --data ../shared/data ...
 *
 * What it does not cover:
 * - CPUID run before it is loaded: ld.so's (the C library chose its string functions from the
 *   real answer; GLIBC_TUNABLES=glibc.cpu.hwcaps=-AVX512F,... masks those) and the constructors
 *   of the executable's own linked libraries. Python loads its extensions (numpy, ONNX Runtime,
 *   jaxlib, torch, fusedmlp) later, so they all see the masked answers.
 * - XCR0 (XGETBV) still enables the AVX-512 register state, and the family and model (leaf 1)
 *   are the CPU's: code that picks kernels by model, or runs AVX-512 instructions without asking
 *   CPUID, still does. Leaf 0xD (the XSAVE area's sizes) is passed through on purpose: those
 *   sizes must match XCR0.
 * - A CPUID executed while the thread blocks SIGSEGV kills the process (the kernel forces the
 *   default action on a blocked fault): also one inside the program's own SIGSEGV handler unless
 *   it was installed with SA_NODEFER (e.g. a crash reporter that loads libgcc_s for a backtrace),
 *   and one after the program replaced the handler by a path the interposers do not see (sigset,
 *   sysv_signal, a raw rt_sigaction system call).
 *
 * When the CPU, the hypervisor or the kernel lacks CPUID faulting the library prints why to stderr
 * and changes nothing; FUSEDMLP_AVX2_ONLY_VERBOSE=1 also reports each process it masks.
 * `python -m fusedmlp.bench` names the mask in its machine line (it looks up
 * fusedmlp_avx2_only_active). */
#define _GNU_SOURCE
#include <cpuid.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#ifndef ARCH_SET_CPUID
#define ARCH_SET_CPUID 0x1012
#endif

typedef int (*sigaction_fn)(int, const struct sigaction *, struct sigaction *);
typedef sighandler_t (*signal_fn)(int, sighandler_t);

static sigaction_fn real_sigaction;
static signal_fn real_signal;
static struct sigaction program_segv;  /* the handler the program asked for (SIG_DFL at first) */
static volatile sig_atomic_t active;
static volatile pid_t owner;  /* the process whose handlers these are (not a vfork child) */

static long arch_prctl(int code, unsigned long arg) { return syscall(SYS_arch_prctl, code, arg); }
static pid_t current_pid(void) { return (pid_t)syscall(SYS_getpid); }

/* 1 when this process's CPUID answers are masked. */
__attribute__((visibility("default"))) int fusedmlp_avx2_only_active(void) { return active; }

/* The bits a Haswell to Zen 3 CPU (AVX2 + FMA, no AVX-512, no VEX-encoded VNNI) lacks. */
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
     * AVX-NE-CONVERT 5, AMX-COMPLEX 8, AVX-VNNI-INT16 10, AVX10 19 */
    r[0] &= ~((1u << 4) | (1u << 5) | (1u << 21) | (1u << 23));
    r[3] &= ~((1u << 4) | (1u << 5) | (1u << 8) | (1u << 10) | (1u << 19));
  } else if (leaf == 0x24) {
    r[0] = r[1] = r[2] = r[3] = 0; /* AVX10's leaf */
  }
}

static void default_action(int sig, const siginfo_t *info) {
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  real_sigaction(sig, &dfl, NULL);
  /* A fault happens again on return and kills; a SIGSEGV sent by kill() or raise() would not,
   * so it is sent again: pending until this handler returns, when the interrupted code's mask
   * lets it through to the default action. */
  if (info->si_code <= 0) raise(sig);
}

/* Runs with every signal blocked (its sa_mask), so that no handler can run a CPUID between the
 * two arch_prctl calls and see the unmasked answer. */
static void on_segv(int sig, siginfo_t *info, void *ctx_) {
  ucontext_t *ctx = (ucontext_t *)ctx_;
  greg_t *g = ctx->uc_mcontext.gregs;
  const unsigned char *ip = (const unsigned char *)g[REG_RIP];
  /* A CPUID fault: SI_KERNEL (the kernel's force_sig) at a 0F A2 instruction. */
  if (info->si_code == SI_KERNEL && ip[0] == 0x0f && ip[1] == 0xa2) {
    uint32_t leaf = (uint32_t)g[REG_RAX], subleaf = (uint32_t)g[REG_RCX], r[4];
    if (arch_prctl(ARCH_SET_CPUID, 1) != 0) { /* cannot answer: the process dies of it */
      default_action(sig, info);
      return;
    }
    __cpuid_count(leaf, subleaf, r[0], r[1], r[2], r[3]);
    if (arch_prctl(ARCH_SET_CPUID, 0) != 0) active = 0; /* unmasked from here on */
    mask(leaf, subleaf, r);
    g[REG_RAX] = r[0];
    g[REG_RBX] = r[1];
    g[REG_RCX] = r[2];
    g[REG_RDX] = r[3];
    g[REG_RIP] += 2;
    return;
  }
  /* Not ours: what the program asked for. */
  struct sigaction chained = program_segv;
  void (*handler)(int) = chained.sa_handler; /* shares its storage with sa_sigaction */
  if (handler == SIG_IGN && info->si_code <= 0) return; /* a sent SIGSEGV, ignored */
  if (handler == SIG_DFL || handler == SIG_IGN) {          /* a fault is never ignored */
    default_action(sig, info);
    return;
  }
  if (chained.sa_flags & SA_RESETHAND) {
    memset(&program_segv, 0, sizeof program_segv);
    program_segv.sa_handler = SIG_DFL;
  }
  /* The program's handler under the mask it asked for: the interrupted code's, its sa_mask, and
   * SIGSEGV itself unless SA_NODEFER. */
  sigset_t during, before;
  during = ctx->uc_sigmask;
  sigorset(&during, &during, &chained.sa_mask);
  if (!(chained.sa_flags & SA_NODEFER)) sigaddset(&during, sig);
  pthread_sigmask(SIG_SETMASK, &during, &before);
  if (chained.sa_flags & SA_SIGINFO)
    chained.sa_sigaction(sig, info, ctx_);
  else
    handler(sig);
  pthread_sigmask(SIG_SETMASK, &before, NULL);
}

/* The program's SIGSEGV handlers are kept aside: ours stays installed and passes them every
 * fault that is not a CPUID. A vfork child (another pid, this process's memory) sets its own. */
int sigaction(int sig, const struct sigaction *act, struct sigaction *old) {
  if (!real_sigaction) real_sigaction = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
  if (sig != SIGSEGV || !active || current_pid() != owner) return real_sigaction(sig, act, old);
  if (old) *old = program_segv;
  if (act) program_segv = *act;
  return 0;
}

/* glibc's signal() does not go through the exported sigaction. */
sighandler_t signal(int sig, sighandler_t handler) {
  if (!real_signal) real_signal = (signal_fn)dlsym(RTLD_NEXT, "signal");
  if (sig != SIGSEGV || !active || current_pid() != owner) return real_signal(sig, handler);
  if (handler == SIG_ERR) {
    errno = EINVAL;
    return SIG_ERR;
  }
  sighandler_t previous = program_segv.sa_handler;
  memset(&program_segv, 0, sizeof program_segv);
  program_segv.sa_handler = handler;
  program_segv.sa_flags = SA_RESTART; /* glibc's signal(): BSD semantics */
  return previous;
}

static void after_fork_in_child(void) { owner = current_pid(); }

__attribute__((constructor)) static void start(void) {
  const char *verbose = getenv("FUSEDMLP_AVX2_ONLY_VERBOSE");
  real_sigaction = (sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
  real_signal = (signal_fn)dlsym(RTLD_NEXT, "signal");
  owner = current_pid();
  pthread_atfork(NULL, NULL, after_fork_in_child);
  struct sigaction a;
  memset(&a, 0, sizeof a);
  a.sa_sigaction = on_segv;
  a.sa_flags = SA_SIGINFO | SA_ONSTACK; /* on the alternate stack where there is one */
  sigfillset(&a.sa_mask);
  real_sigaction(SIGSEGV, &a, &program_segv);
  if (arch_prctl(ARCH_SET_CPUID, 0) != 0) {
    int err = errno;
    real_sigaction(SIGSEGV, &program_segv, NULL);
    fprintf(stderr, "avx2_only: no CPUID faulting (%s); nothing masked\n",
            err == ENODEV ? "the CPU or hypervisor lacks it" : strerror(err));
    return;
  }
  active = 1;
  if (verbose && *verbose == '1')
    fprintf(stderr, "avx2_only: CPUID answers without AVX-512/AMX in process %d\n", (int)owner);
}
