// Thread teams that survive fork().
//
// libgomp's thread pool does not: in a child forked after its parent ran a team of threads, a
// parallel region of more than one thread waits forever for pool threads that exist only in
// the parent (joblib's "multiprocessing" backend, multiprocessing's fork pools, os.fork). Every
// team this engine starts asks team_threads() for its size first; in such a child it answers 1,
// so the child computes the same results on its calling thread and never hangs. A child whose
// parent never started a team keeps its threads.
#pragma once

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>

namespace fusedmlp {
namespace cpu {

// Threads of the training passes running now in this process (fits in several Python threads
// run at once), each pass counting its full team: an epoch's segments, or an L-BFGS evaluation.
// A team that loses while they run has met a load that lasts, which the machine's count cannot
// tell from this process's idle pool threads (see TeamChooser::record).
// fusedmlp._cpu._training_threads_running().
inline std::atomic<int> training_threads_running{0};
class TrainingRunning {
 public:
  explicit TrainingRunning(int threads) : threads_(threads) {
    training_threads_running.fetch_add(threads_, std::memory_order_relaxed);
  }
  ~TrainingRunning() { training_threads_running.fetch_sub(threads_, std::memory_order_relaxed); }
  TrainingRunning(const TrainingRunning&) = delete;
  TrainingRunning& operator=(const TrainingRunning&) = delete;

 private:
  const int threads_;
};

namespace fork_state {
inline std::atomic<bool> team_started{false};
inline std::atomic<bool> forked_after_team{false};
inline void on_fork_child() {
  if (team_started.load(std::memory_order_relaxed))
    forked_after_team.store(true, std::memory_order_relaxed);
  // (the forking thread ran none of them; the parent's other threads do not exist here)
  training_threads_running.store(0, std::memory_order_relaxed);
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

// The machine's load as a new trainer sees it before it first runs its team.
//
// `runnable`: tasks running or waiting for a CPU on the machine right now (the fourth field of
// /proc/loadavg, this thread included); `own`: this process's threads among them (state R in
// /proc/self/task/*/stat: idle pool threads that spin, OpenMP's and the BLAS's, count as
// running); `cpus`: the CPUs online. All 0 where /proc cannot be read (nothing is known then).
struct MachineLoad {
  int runnable = 0;
  int own = 0;
  int cpus = 0;
};

// The whole of a small /proc file (O_CLOEXEC: a fork+exec elsewhere does not inherit it).
inline int read_proc_file(const char* path, char* buf, int size) {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  const ssize_t n = ::read(fd, buf, static_cast<size_t>(size - 1));
  ::close(fd);
  if (n < 0) return -1;
  buf[n] = '\0';
  return static_cast<int>(n);
}

// /proc/loadavg's runnable count ("0.50 0.40 0.30 3/250 1234": the 3), -1 if unreadable.
inline int machine_runnable() {
  char buf[128];
  if (read_proc_file("/proc/loadavg", buf, sizeof buf) <= 0) return -1;
  const char* p = buf;
  for (int field = 0; field < 3; ++field) {  // (no sscanf: %lf would follow LC_NUMERIC)
    p = std::strchr(p, ' ');
    if (p == nullptr) return -1;
    ++p;
  }
  if (*p < '0' || *p > '9') return -1;
  return std::atoi(p);
}

inline int own_runnable_threads() {
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return 0;
  int running = 0;
  char path[64], buf[512];
  while (const dirent* e = readdir(dir)) {
    if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
    std::snprintf(path, sizeof path, "/proc/self/task/%.20s/stat", e->d_name);
    if (read_proc_file(path, buf, sizeof buf) <= 0) continue;  // (a thread that ended meanwhile)
    const char* close = std::strrchr(buf, ')');  // the state follows "(comm) "
    if (close != nullptr && close[1] == ' ' && close[2] == 'R') ++running;
  }
  closedir(dir);
  return running;
}

inline int online_cpus() { return static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)); }

// `cpus`: the online CPUs, when the caller has read them already.
inline MachineLoad machine_load(int cpus = online_cpus()) {
  MachineLoad load;
  // this process's threads first: one that stops running before the machine's count is read
  // then makes the others' count smaller, never larger (no false alarm)
  const int own = own_runnable_threads();
  const int runnable = machine_runnable();
  if (runnable < 0) return load;
  load.runnable = runnable;
  load.own = own;
  load.cpus = cpus;
  return load;
}

// What the machine's load says of a team of `team` threads: `oversubscribed` when the other
// processes' runnable tasks and the team (and `extra` threads of this process besides it) need
// more CPUs than the machine has (a team member would then wait for time slices), `free` when
// they do not, `unknown` when the load cannot tell. Only a
// process that may run on every online CPU can tell (the count is the whole machine's; a process
// pinned to some CPUs cannot see which of them are busy), and the answer is that of most of
// `looks` readings 1 ms apart, either way: a transient task, or a pool thread of this process that
// stops spinning between the two reads, must not send a trainer to one thread, and one reading
// alone can also count fewer tasks than run (two busy processes, this thread and a spinning pool
// thread of its process read once as 2 runnable tasks, in about one fit's check of 40:
// bench/RESULTS.md), which must not start a team on a loaded machine. 1: a single reading
// decides, for a choice that costs little when wrong. FUSEDMLP_CHECK_LOAD=0 turns the check off
// (`unknown`; the tests do, except those of the check itself).
enum class LoadState { unknown, free, oversubscribed };
inline LoadState machine_load_state(int team, int looks = 3, int extra = 0) {
  const char* env = std::getenv("FUSEDMLP_CHECK_LOAD");
  if (env != nullptr && std::strcmp(env, "0") == 0) return LoadState::unknown;
  const int cpus = online_cpus();
  cpu_set_t allowed;
  if (cpus <= 1 || sched_getaffinity(0, sizeof allowed, &allowed) != 0 || CPU_COUNT(&allowed) < cpus)
    return LoadState::unknown;
  const int needed = std::min(team, cpus) + extra;
  // the machine's count alone first: with this thread as this process's only running one, are
  // there CPUs enough? (two file reads, the second to confirm the first: the usual answer on an
  // idle machine)
  for (int read = 0;; ++read) {
    const int runnable = machine_runnable();
    if (runnable < 0) return LoadState::unknown;
    if (runnable - 1 + needed > cpus) break;
    if (read == 1) return LoadState::free;
  }
  const int most = looks / 2 + 1;  // (readings that decide)
  int free_seen = 0, busy_seen = 0;
  for (int look = 0; look < looks; ++look) {
    if (look > 0) {
      const timespec pause{0, 1000000};
      nanosleep(&pause, nullptr);
    }
    const MachineLoad load = machine_load(cpus);
    if (load.cpus <= 0) return LoadState::unknown;
    const int others = std::max(0, load.runnable - std::max(load.own, 1));
    const bool fits = others + needed <= load.cpus;
    if (fits && ++free_seen >= most) return LoadState::free;
    if (!fits && ++busy_seen >= most) return LoadState::oversubscribed;
  }
  return free_seen >= busy_seen ? LoadState::free : LoadState::oversubscribed;  // (a tie: free)
}

inline bool machine_oversubscribed(int team, int looks = 3) {
  return machine_load_state(team, looks) == LoadState::oversubscribed;
}

// The team size of each segment of an epoch: the full team, or the calling thread alone.
//
// A team synchronises several times per mini-batch. On a machine whose cores are busy with other
// work, a team member is often descheduled, every barrier then waits for a time slice, and a team
// of two ran 1.3 to 8 times (once 46 times) slower than one thread (bench/RESULTS.md). So an
// epoch runs in segments of a few milliseconds, each timed; the faster choice per row runs, and
// the other is tried again now and then (one batch after an untimed warm-up batch), the tries
// costing a few percent of the time at most, less while they keep losing, and never more than
// ten seconds apart. Neither the weights nor the reported loss depend on the choice: the kernels
// give the same bits on any team, and the loss is summed from fixed slots in order (dense.h,
// sum_in_order).
// Epoch segments run so far in this process, on one thread and on a full team (a diagnostic:
// fusedmlp._cpu.team_segments()), and prediction calls that had a team to choose from
// (fusedmlp._cpu.team_predictions()).
inline std::atomic<long long> segments_run[2] = {0, 0};
inline std::atomic<long long> predictions_run[2] = {0, 0};

class TeamChooser {
 public:
  // What a chooser times: an epoch's segments (counted in segments_run; a loss of the team is
  // also the process's verdict for new trainers, see pick), or prediction calls (counted in
  // predictions_run). A call of a few microseconds is timed too noisily to speak for the
  // process or to switch the team alone (a member that happened to be running makes a lucky
  // call on a loaded machine), so a prediction chooser neither reads nor writes that verdict,
  // and keeps the plain median of its calls (see record).
  enum class Kind { epoch, prediction };
  explicit TeamChooser(Kind kind = Kind::epoch)
      : runs_(kind == Kind::epoch ? segments_run : predictions_run), epoch_(kind == Kind::epoch) {}
  // The team for the next segment, given the full team's size.
  int pick(int full) {
    if (full <= 1) return 1;
    const double now = seconds();
    int choice;
    if (n_[kFull] == 0) {
      // the configured team first, unless another trainer of this process found it slower
      // lately (the machine's load, not the network, decides that), or the machine is busy
      choice = (!epoch_ || now >= shared_full_retry_at().load(std::memory_order_relaxed)) &&
                       now >= deferred_until_
                   ? kFull
                   : kSolo;
      if (choice == kFull && !load_checked_) {
        // Once per trainer, before its team's first segment: when other processes leave fewer
        // free CPUs than the team has threads, the team's first segments (a warm-up and a try)
        // would cost 10-60 times a one-thread batch each, which short fits in a loop on a busy
        // machine paid in every fit. Start alone, as after a loss of the team, for
        // kMinSharedDelay (this trainer and new ones); then the team's tries and timings decide.
        // A prediction's chooser reads the load again each time that delay is over, as before
        // each retry of a team that lost (below): with one reading only, its first team try came
        // a second into the load, and the slowest of its two calls (warm-up and try) took 26-47
        // ms where a one-row call on one thread takes about 0.2 ms there (bench/RESULTS.md).
        load_checked_ = true;
        if (load_state(full, epoch_ ? 3 : 1) == LoadState::oversubscribed) {  // (a prediction: one reading)
          deferred_until_ = now + kMinSharedDelay;
          if (epoch_)
            raise_shared_retry(deferred_until_);
          else
            load_checked_ = false;
          choice = kSolo;
        }
      }
    } else if (n_[kSolo] == 0)
      choice = kSolo;  // then one try of the calling thread alone
    else {
      const int best = best_of_two();
      choice = now >= retry_at_[1 - best] ? 1 - best : best;
      if (!epoch_ && choice == kFull && best == kSolo) {
        // A prediction's retry of a team that lost, while other processes leave fewer free CPUs
        // than it has threads (one reading of /proc): not run. A call of microseconds on a
        // loaded team waits for time slices, and one call whose members happened to be running
        // wins a try and brings back the team for calls that pay it (one Fashion-MNIST row
        // under two busy processes: 115 us a call against 72 us alone, bench/RESULTS.md). The
        // retry falls due again after 100 times what the reading cost, kLoadRecheck at least.
        if (load_state(full, 1) == LoadState::oversubscribed) {
          const double check = seconds() - now;
          retry_at_[kFull] = now + std::min(std::max(100 * check, kLoadRecheck), kMaxDelay);
          choice = kSolo;
        }
      }
    }
    trying_ = n_[choice] == 0 || (n_[1 - choice] > 0 && choice != best_of_two());
    return choice == kFull ? full : 1;
  }

  // Mini-batches in a segment of about kSegmentSeconds on `team`; one while the choice is
  // being tried (untimed, or the slower one): a try costs one batch and its warm-up.
  long long segment_batches(int team, long long batch_rows, long long remaining) const {
    const int i = team > 1 ? kFull : kSolo;
    long long n = 1;
    const double batch_seconds = trying_ ? 0.0 : cost(i) * static_cast<double>(batch_rows);
    if (batch_seconds > 0)  // (a clock too coarse to time a segment leaves segments of one batch)
      n = static_cast<long long>(std::min(kSegmentSeconds / batch_seconds, 1e9));
    return std::clamp<long long>(n, 1, std::max<long long>(remaining, 1));
  }

  // Tests of the rules: the other processes' load as given (instead of read from /proc: `free`
  // leaves CPUs enough for the team alone) and the threads of this process's other training
  // passes (instead of training_threads_running's).
  void set_conditions_for_tests(std::optional<LoadState> load, std::optional<int> other_threads) {
    test_load_ = load ? static_cast<int>(*load) : -1;
    test_other_threads_ = other_threads ? *other_threads : -1;
  }

  // Forgets what other trainers learnt (tests start from a known state).
  static void forget_shared() {
    shared_full_retry_at().store(0.0, std::memory_order_relaxed);
    shared_full_backoff().store(kFirstBackoff, std::memory_order_relaxed);
  }

  // A segment on `team` took `elapsed` seconds for `rows` rows.
  void record(int team, double elapsed, long long rows) {
    if (rows <= 0) return;
    const int i = team > 1 ? kFull : kSolo;
    runs_[i].fetch_add(1, std::memory_order_relaxed);
    // The first segment of a trainer, and the first after a change of team, also touch new
    // buffers or wake sleeping threads: not timed.
    const bool warm_up = i != last_;
    last_ = i;
    if (warm_up) {
      warm_up_elapsed_ = elapsed;  // (what a try cost besides its timed segment)
      return;
    }
    const double try_elapsed = elapsed + warm_up_elapsed_;
    warm_up_elapsed_ = 0.0;
    const bool was_best = n_[1 - i] == 0 || (n_[i] > 0 && best_of_two() == i);
    const double per_row = elapsed / static_cast<double>(rows);
    // A choice's cost is the median of its last kKeep segments, tries included: one segment
    // that the operating system happened to favour or delay does not switch the team. But a
    // try of the losing choice that alone would win means that what made it lose has passed
    // (another process's burst; a thread pool of this process, numpy's BLAS or PyTorch's,
    // spinning for a while after its call): its older segments no longer tell, and keeping
    // them would hold the slower choice for two more retries.
    if (epoch_ && !was_best && n_[i] > 0 && n_[1 - i] > 0 && wins_alone(i, per_row))
      n_[i] = next_[i] = 0;
    times_[i][next_[i]] = per_row;
    next_[i] = (next_[i] + 1) % kKeep;
    n_[i] = std::min(n_[i] + 1, kKeep);
    if (n_[1 - i] == 0) return;
    if (best_of_two() == i) {
      if (!was_best) backoff_[1 - i] = kFirstBackoff;  // a new winner: try the loser again soon
      if (i == kFull && epoch_) {
        shared_full_retry_at().store(0.0, std::memory_order_relaxed);
        shared_full_backoff().store(kFirstBackoff, std::memory_order_relaxed);
      }
      return;
    }
    // This choice lost: try it again only after its backoff times what this try cost, its
    // warm-up segment included (so the tries take about 1/backoff of the time or less; the
    // warm-up of a team on a loaded machine can cost a time slice), later each time it loses again
    // (each choice its own backoff: the tries of one thread that lost at the start must not
    // delay the team's return after a loss of its own), and never later than kMaxDelay
    // seconds (the backoff may have grown long before the load came).
    if (was_best) backoff_[i] = kFirstBackoff;  // the winner until now: its backoff starts anew
    double delay = backoff_[i] * try_elapsed;
    // An epoch's team that lost on a machine with CPUs enough for it and for the other training
    // passes of this process (fits in other Python threads, training_threads_running): the
    // loss came from within this process, most often a transient (another library's thread
    // pool spinning for a while after its call, numpy's BLAS about 0.1 s: a team segment
    // meanwhile waited 16 ms for a time slice, which would have put the next try seconds away),
    // or from noise. The team is tried again after kTransientRetry, twice as late each time it
    // loses again, never later than the rule above.
    const LoadState load = i == kFull && epoch_ ? load_state(team, 3, other_training_threads(team))
                                                : LoadState::unknown;
    if (load == LoadState::free)
      delay = std::min(delay, kTransientRetry * backoff_[i] / kFirstBackoff);
    retry_at_[i] = seconds() + std::min(delay, kMaxDelay);
    if (!was_best) backoff_[i] = std::min(backoff_[i] * 2, kMaxBackoff);
    if (i == kFull && epoch_ && load != LoadState::free) {
      // New trainers wait for the process's verdict, whose backoff grows with every loss of
      // the team in any trainer: a loop of short fits (a grid search's) then tries the loaded
      // team ever more rarely, as one long fit does, instead of in every fit. (Not after a
      // loss on a machine with CPUs enough, which says nothing of the fits to come.)
      const double shared = shared_full_backoff().load(std::memory_order_relaxed);
      const double delay = std::max(std::max(shared, backoff_[i]) * try_elapsed, kMinSharedDelay);
      const double at = seconds() + std::min(delay, kMaxDelay);
      raise_shared_retry(std::max(at, retry_at_[i]));
      shared_full_backoff().store(std::min(shared * 2, kMaxBackoff), std::memory_order_relaxed);
    }
  }

 private:
  static constexpr int kSolo = 0, kFull = 1;
  static constexpr int kKeep = 3;  // a choice's cost: the median of its last three segments
  static constexpr double kSegmentSeconds = 4e-3;
  static constexpr double kFirstBackoff = 50, kMaxBackoff = 3200, kMaxDelay = 10.0;
  static constexpr double kTransientRetry = 0.1;  // seconds, see record()
  static constexpr double kLoadRecheck = 0.01;    // seconds, see pick()
  // New trainers start alone for at least this long after the team lost in any trainer: the
  // first segments of a trainer on a loaded team cost 10-100 times a one-thread batch, which
  // a loop of short fits would otherwise pay in every fit.
  static constexpr double kMinSharedDelay = 1.0;
  // One thread replaces the team only when clearly faster: timing noise on an idle machine
  // must not cost the team's speed.
  static constexpr double kSoloMargin = 0.9;
  static double seconds() {
    return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
  }
  // When the full team lost to one thread last, in any trainer of the process: until then a
  // new trainer starts on one thread (short fits in a loop would otherwise each pay a slow
  // first segment on a loaded machine).
  static std::atomic<double>& shared_full_retry_at() {
    static std::atomic<double> at{0.0};
    return at;
  }
  // The multiple of a losing segment's time the process waits before a new trainer tries the
  // team again: doubled at every loss of the team, back to kFirstBackoff when it wins.
  static std::atomic<double>& shared_full_backoff() {
    static std::atomic<double> backoff{kFirstBackoff};
    return backoff;
  }
  // Seconds per row: the median of the kept segments (the mean of two), so that one segment
  // delayed by the operating system does not switch the team.
  double cost(int i) const {
    const double* t = times_[i];
    if (n_[i] == 1) return t[0];
    if (n_[i] == 2) return 0.5 * (t[0] + t[1]);
    return std::max(std::min(t[0], t[1]), std::min(std::max(t[0], t[1]), t[2]));
  }
  // The shared retry time moves later only (trainers of several Python threads record at once).
  static void raise_shared_retry(double at) {
    std::atomic<double>& shared = shared_full_retry_at();
    double seen = shared.load(std::memory_order_relaxed);
    while (seen < at && !shared.compare_exchange_weak(seen, at, std::memory_order_relaxed)) {
    }
  }
  LoadState load_state(int team, int looks, int extra = 0) const {
    if (test_load_ < 0) return machine_load_state(team, looks, extra);
    const LoadState given = static_cast<LoadState>(test_load_);
    const int cpus = online_cpus();
    return given == LoadState::free && std::min(team, cpus) + extra > cpus ? LoadState::oversubscribed
                                                                          : given;
  }
  // Threads of this process's training passes besides the epoch this chooser times, whose full
  // team of `team` threads counts itself (an epoch's chooser records within its epoch).
  int other_training_threads(int team) const {
    if (test_other_threads_ >= 0) return test_other_threads_;
    return std::max(0, training_threads_running.load(std::memory_order_relaxed) - team);
  }
  int best_of_two() const { return cost(kSolo) < kSoloMargin * cost(kFull) ? kSolo : kFull; }
  // Whether choice i, at `per_row` seconds per row, would be the best against the other's cost.
  bool wins_alone(int i, double per_row) const {
    return i == kSolo ? per_row < kSoloMargin * cost(kFull) : !(cost(kSolo) < kSoloMargin * per_row);
  }
  std::atomic<long long>* runs_;
  bool epoch_;  // an epoch's chooser (reads and writes the process's verdict on the full team)
  double times_[2][kKeep] = {};
  int n_[2] = {0, 0};
  int next_[2] = {0, 0};
  int last_ = -1;
  double retry_at_[2] = {0.0, 0.0};
  double backoff_[2] = {kFirstBackoff, kFirstBackoff};
  bool trying_ = true;  // the last pick was a try
  double warm_up_elapsed_ = 0.0;  // the untimed segment before the next timed one
  bool load_checked_ = false;   // the machine was asked whether it is oversubscribed (see pick)
  double deferred_until_ = 0.0;  // it said yes: one thread until then
  int test_load_ = -1;           // set_conditions_for_tests: a LoadState, or -1 (read /proc)
  int test_other_threads_ = -1;  // ... other training threads, or -1 (training_threads_running)
};

}  // namespace cpu
}  // namespace fusedmlp
