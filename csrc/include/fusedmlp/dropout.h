// Dropout's random mask, written once for every engine: a counter-based generator, so whether
// unit j of row i of a layer is kept in a batch is a pure function of (seed, epoch, batch,
// layer, row, unit). Neither the thread count, nor the order in which tiles are computed, nor
// the engine (CPU or CUDA) changes the mask, and the backward pass recomputes it instead of
// storing it. Inverted dropout: kept units are scaled by 1 / (1 - rate) in training, so
// prediction uses the weights as they are.
#pragma once

#include <cstdint>

#include "fusedmlp/common.h"

namespace fusedmlp {

// SplitMix64's finaliser (Steele, Lea and Flood): a bijection of 64-bit words whose every
// output bit depends on every input bit.
FUSEDMLP_HD std::uint64_t mix64(std::uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The key of one layer's mask in one batch.
FUSEDMLP_HD std::uint64_t dropout_key(std::uint64_t seed, std::uint64_t epoch, std::uint64_t batch,
                                      int layer) {
  return mix64(mix64(mix64(mix64(seed) ^ epoch) ^ batch) ^ static_cast<std::uint64_t>(layer));
}

// MurmurHash3's 32-bit finaliser: a bijection whose output bits each depend on every input
// bit, in 32-bit multiplies that vectorise on every instruction set (AVX2 has no 64-bit one).
FUSEDMLP_HD std::uint32_t mix32(std::uint32_t h) {
  h ^= h >> 16;
  h *= 0x85EBCA6Bu;
  h ^= h >> 13;
  h *= 0xC2B2AE35u;
  return h ^ (h >> 16);
}

// A row's share of its cells' bits: the same for every unit of the row (hoisted out of the
// loop over units).
FUSEDMLP_HD std::uint32_t dropout_row_hash(std::uint64_t key, index_t row) {
  return mix32(static_cast<std::uint32_t>(row) ^ static_cast<std::uint32_t>(key)) ^
         static_cast<std::uint32_t>(key >> 32);
}

// 32 uniform bits for (row, unit) under a layer's key: a Weyl sequence over the units, started
// at the row's hash, through the finaliser.
FUSEDMLP_HD std::uint32_t dropout_bits_in_row(std::uint32_t row_hash, index_t unit) {
  return mix32(row_hash + static_cast<std::uint32_t>(unit) * 0x9E3779B9u);
}

FUSEDMLP_HD std::uint32_t dropout_bits(std::uint64_t key, index_t row, index_t unit) {
  return dropout_bits_in_row(dropout_row_hash(key, row), unit);
}

// A unit is dropped when its bits fall below the threshold: P(drop) = threshold / 2^32.
inline std::uint32_t dropout_threshold(double rate) {
  const double t = rate * 4294967296.0;
  return t >= 4294967295.0 ? 0xFFFFFFFFu : static_cast<std::uint32_t>(t + 0.5);
}

// One hidden layer's write-back in training: its activation's parameter, where its
// pre-activations go (null: not stored), and its dropout mask (threshold 0: no dropout).
template <class T>
struct HiddenUnits {
  T param = T(0);            // the activation's scalar parameter
  T* pre = nullptr;          // z, same shape as the layer's outputs (row stride ld_pre)
  index_t ld_pre = 0;
  std::uint64_t key = 0;     // dropout_key(...) of this layer and batch
  std::uint32_t threshold = 0;
  T keep_scale = T(1);       // 1 / (1 - rate)
  index_t row0 = 0;          // the batch row of the first row this call computes

  FUSEDMLP_HD bool dropout() const { return threshold != 0; }
  // The dropout factor of (row, unit), rows counted from this call's first: 0 or keep_scale.
  FUSEDMLP_HD T mask(index_t row, index_t unit) const {
    return dropout_bits(key, row0 + row, unit) < threshold ? T(0) : keep_scale;
  }
};

}  // namespace fusedmlp
