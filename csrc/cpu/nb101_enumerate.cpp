// CPU bindings of vaenas::nb101_enumerate and vaenas::nb101_hash (kernel: csrc/kernels/nb101_enumerate.cpp).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstring>
#include <stdexcept>
#include <tuple>

#include "kernels/nb101_enumerate.h"
#include "message_text.h"

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
              "nb101_enumerate: max_vertices must be in [2, ", text(int64_t(kernels::kNb101MaxVertices)), "], got ",
              text(max_vertices));
  TORCH_CHECK(max_edges >= 0 && max_edges <= 21, "nb101_enumerate: max_edges must be in [0, 21], got ", text(max_edges));
  const kernels::Nb101Cells cells = kernels::nb101_enumerate(int(max_vertices), int(max_edges));
  const int64_t count = cells.size();
  constexpr int64_t V = kernels::kNb101MaxVertices;
  TORCH_INTERNAL_ASSERT(int64_t(cells.matrices.size()) == count * V * V && int64_t(cells.labels.size()) == count * V &&
                        int64_t(cells.fingerprints.size()) == count * 16);
  return {to_tensor(cells.matrices, {count, V, V}, at::kByte), to_tensor(cells.labels, {count, V}, at::kChar),
          to_tensor(cells.num_vertices, {count}, at::kLong), to_tensor(cells.fingerprints, {count, 16}, at::kByte)};
}

at::Tensor nb101_hash_cpu(const at::Tensor& archs) {
  constexpr int64_t T = kernels::kNb101NumTokens, E = kernels::kNb101NumEdgeBits;
  TORCH_CHECK(archs.device().is_cpu(), "nb101_hash: archs must be a CPU tensor, got one on ", archs.device());
  TORCH_CHECK(archs.scalar_type() == at::kLong, "nb101_hash: archs must be int64 (LongTensor), got ",
              archs.scalar_type());
  TORCH_CHECK(archs.dim() == 2 && archs.size(1) == T, "nb101_hash: archs must be [N, ", text(T), "], got ",
              text(archs.sizes()));
  const at::Tensor tokens = archs.contiguous();
  const int64_t count = tokens.size(0);
  const int64_t* data = tokens.const_data_ptr<int64_t>();
  // The token check is a serial pass (about 1 ns per token) so that the error names the first bad
  // row; the kernel itself trusts its input.
  for (int64_t row = 0; row < count; ++row) {
    for (int64_t t = 0; t < T; ++t) {
      const int64_t token = data[row * T + t];
      const int64_t vocab = t < E ? 2 : kernels::kNb101NumOps;
      TORCH_CHECK(token >= 0 && token < vocab, "nb101_hash: row ", text(row), ", token ", text(t), " (",
                  t < E ? "an edge bit" : "an op label", ") is ", text(token), ", expected 0..", text(vocab - 1));
    }
  }
  at::Tensor fingerprints = at::empty({count, 16}, tokens.options().dtype(at::kByte));
  uint8_t* out = fingerprints.data_ptr<uint8_t>();
  // About 6 us per row (57 md5 digests for a 7-vertex cell): grains of 64 rows keep the
  // threads' start-up cost negligible.
  at::parallel_for(0, count, 64, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) kernels::nb101_arch_fingerprint(data + row * T, out + row * 16);
  });
  return fingerprints;
}

}  // namespace

TORCH_LIBRARY_IMPL(vaenas, CPU, m) { m.impl("nb101_hash", &nb101_hash_cpu); }

// The op has no tensor argument, so the dispatcher has no device to read a backend key from: a
// CPU-key kernel would never be reached ("no tensor arguments ... no fallback function"). The
// CompositeExplicitAutograd key serves calls without tensors; the result is always on the CPU.
TORCH_LIBRARY_IMPL(vaenas, CompositeExplicitAutograd, m) { m.impl("nb101_enumerate", &nb101_enumerate_cpu); }

}  // namespace vaenas
