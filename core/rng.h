// splitmix64: a tiny, fully specified random generator. Used where results must be identical on
// every platform and device (data order, sampling); std:: distributions are implementation-defined.
#pragma once

#include <cstdint>
#include <string_view>

namespace posttrain {

// Advances `state` and returns the next 64 random bits.
inline uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A uniform double in [0, 1) from the top 53 bits.
inline double uniform01(uint64_t& state) { return static_cast<double>(splitmix64(state) >> 11) * 0x1.0p-53; }

// FNV-1a over bytes: a stable 64-bit hash of a string (std::hash differs between libraries), used
// to seed per-item draws.
inline uint64_t fnv1a64(std::string_view text) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  return h;
}

}  // namespace posttrain
