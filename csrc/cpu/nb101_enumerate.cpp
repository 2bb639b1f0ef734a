// CPU binding of vaenas::nb101_enumerate (kernel: csrc/kernels/nb101_enumerate.cpp).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <cstring>
#include <stdexcept>
#include <tuple>

#include "kernels/nb101_enumerate.h"

namespace vaenas {

namespace {

template <typename T>
at::Tensor to_tensor(const std::vector<T>& values, at::IntArrayRef shape, at::ScalarType dtype) {
  at::Tensor tensor = at::empty(shape, at::TensorOptions().dtype(dtype).device(at::kCPU));
  if (!values.empty()) std::memcpy(tensor.data_ptr(), values.data(), values.size() * sizeof(T));
  return tensor;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> nb101_enumerate_cpu(int64_t max_vertices,
                                                                               int64_t max_edges) {
  TORCH_CHECK(max_vertices >= 2 && max_vertices <= kernels::kNb101MaxVertices,
              "nb101_enumerate: max_vertices must be in [2, ", kernels::kNb101MaxVertices, "], got ", max_vertices);
  TORCH_CHECK(max_edges >= 0 && max_edges <= 21, "nb101_enumerate: max_edges must be in [0, 21], got ", max_edges);
  const kernels::Nb101Cells cells = kernels::nb101_enumerate(int(max_vertices), int(max_edges));
  const int64_t count = cells.size();
  constexpr int64_t V = kernels::kNb101MaxVertices;
  TORCH_INTERNAL_ASSERT(int64_t(cells.matrices.size()) == count * V * V && int64_t(cells.labels.size()) == count * V &&
                        int64_t(cells.fingerprints.size()) == count * 16);
  return {to_tensor(cells.matrices, {count, V, V}, at::kByte), to_tensor(cells.labels, {count, V}, at::kChar),
          to_tensor(cells.num_vertices, {count}, at::kLong), to_tensor(cells.fingerprints, {count, 16}, at::kByte)};
}

}  // namespace

// The op has no tensor argument, so the dispatcher has no device to read a backend key from: a
// CPU-key kernel would never be reached ("no tensor arguments ... no fallback function"). The
// CompositeExplicitAutograd key serves calls without tensors; the result is always on the CPU.
TORCH_LIBRARY_IMPL(vaenas, CompositeExplicitAutograd, m) { m.impl("nb101_enumerate", &nb101_enumerate_cpu); }

}  // namespace vaenas
