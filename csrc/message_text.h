// Numbers in TORCH_CHECK messages, formatted with std::to_string instead of an ostream.
//
// Why: on the GPU image (GCC 13 headers, torch 2.11.0+cu130) a TORCH_CHECK message that streamed
// an integer or a shape from vaenas._C crashed inside libstdc++'s ostream::_M_insert<long> (the
// num_put facet; cuda-gdb backtrace, 2026-11-28), while messages made of strings raised normally.
// std::to_string formats through vsnprintf and never touches a locale facet.
#pragma once

#include <c10/util/ArrayRef.h>

#include <cstdint>
#include <string>

namespace vaenas {

inline std::string text(int64_t value) { return std::to_string(value); }

inline std::string text(double value) { return std::to_string(value); }

inline std::string text(c10::IntArrayRef sizes) {
  std::string result = "[";
  for (size_t i = 0; i < sizes.size(); ++i) result += (i ? ", " : "") + std::to_string(sizes[i]);
  return result + "]";
}

}  // namespace vaenas
