// Interruption of long native calls: the caller's check (e.g. Python's Ctrl-C), polled at most
// every 20 ms by the thread that made the call.
#pragma once

#include <chrono>

#include "fusedmlp/training.h"

namespace fusedmlp {
namespace cpu {

class StopClock {
 public:
  explicit StopClock(const StopCheck& check) : check_(check), last_(clock::now()) {}
  bool poll() {
    if (!check_) return false;
    const auto now = clock::now();
    if (now - last_ < std::chrono::milliseconds(20)) return false;
    last_ = now;
    return check_();
  }

 private:
  using clock = std::chrono::steady_clock;
  const StopCheck& check_;
  clock::time_point last_;
};

}  // namespace cpu
}  // namespace fusedmlp
