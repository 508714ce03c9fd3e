// Thread teams that survive fork().
//
// libgomp's thread pool does not: in a child forked after its parent ran a team of threads, a
// parallel region of more than one thread waits forever for pool threads that exist only in
// the parent (joblib's "multiprocessing" backend, multiprocessing's fork pools, os.fork). Every
// team this engine starts asks team_threads() for its size first; in such a child it answers 1,
// so the child computes the same results on its calling thread and never hangs. A child whose
// parent never started a team keeps its threads.
#pragma once

#include <pthread.h>

#include <atomic>

namespace fusedmlp {
namespace cpu {

namespace fork_state {
inline std::atomic<bool> team_started{false};
inline std::atomic<bool> forked_after_team{false};
inline void on_fork_child() {
  if (team_started.load(std::memory_order_relaxed))
    forked_after_team.store(true, std::memory_order_relaxed);
}
}  // namespace fork_state

// The size of a team asked for `requested` threads: 1 in a child forked after this process
// (or an ancestor) started a team, else `requested`.
inline int team_threads(int requested) {
  static const bool registered = pthread_atfork(nullptr, nullptr, fork_state::on_fork_child) == 0;
  (void)registered;
  if (requested <= 1 || fork_state::forked_after_team.load(std::memory_order_relaxed)) return 1;
  fork_state::team_started.store(true, std::memory_order_relaxed);
  return requested;
}

// Whether this process is a child limited to one thread by team_threads().
inline bool single_threaded_after_fork() {
  return fork_state::forked_after_team.load(std::memory_order_relaxed);
}

}  // namespace cpu
}  // namespace fusedmlp
