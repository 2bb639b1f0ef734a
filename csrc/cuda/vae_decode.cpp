// CUDA implementation of vaenas::vae_decode (schema: csrc/ops.cpp; specification:
// vaenas/ops/reference.py::vae_decode). Checks the inputs and launches the torch-free kernel
// csrc/kernels/vae_decode_cuda on the current stream.
//
// Randomness when uniforms is None: Philox4x32-10 keyed by `seed`, one stateless draw per (row, t)
// (kernels/vae_decode_cuda.cuh::vae_decode_uniform). It is NOT torch.rand's stream, so sampled
// tokens follow the reference's distribution but not its exact draws; given uniforms, they match.
#include <ATen/ATen.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>  // not ATen/cuda/CUDAContext.h: it needs cuSPARSE/cuBLAS headers a minimal toolkit lacks
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "kernels/vae_decode_cuda.cuh"

namespace vaenas {
namespace {

void check_cuda(const at::Tensor& tensor, const char* name, const at::Tensor& z, at::ScalarType dtype, int64_t dim) {
  TORCH_CHECK(tensor.device() == z.device(), "vae_decode (cuda): ", name, " must be on z's device ", z.device(), ", got ",
              tensor.device());
  TORCH_CHECK(tensor.scalar_type() == dtype, "vae_decode: ", name, " must be ", dtype, ", got ", tensor.scalar_type());
  TORCH_CHECK(tensor.dim() == dim, "vae_decode: ", name, " must have ", dim, " dimensions, got shape ", tensor.sizes());
}

std::tuple<at::Tensor, at::Tensor> vae_decode_cuda(
    const at::Tensor& z, const at::Tensor& latent_weight, const at::Tensor& latent_bias, const at::Tensor& input_table,
    const at::Tensor& weight_hh, const at::Tensor& weight_out, const at::Tensor& bias_out, const at::Tensor& vocab_sizes,
    const at::Tensor& budget_mask, int64_t budget_max, const std::optional<at::Tensor>& uniforms, double temperature,
    bool greedy, int64_t seed) {
  TORCH_CHECK(z.is_cuda(), "vae_decode (cuda): z must be a CUDA tensor, got ", z.device());
  check_cuda(z, "z", z, at::kFloat, 2);
  check_cuda(latent_weight, "latent_weight", z, at::kFloat, 2);
  check_cuda(latent_bias, "latent_bias", z, at::kFloat, 1);
  check_cuda(input_table, "input_table", z, at::kFloat, 2);
  check_cuda(weight_hh, "weight_hh", z, at::kFloat, 2);
  check_cuda(weight_out, "weight_out", z, at::kFloat, 3);
  check_cuda(bias_out, "bias_out", z, at::kFloat, 2);
  check_cuda(vocab_sizes, "vocab_sizes", z, at::kLong, 1);
  check_cuda(budget_mask, "budget_mask", z, at::kBool, 1);
  const c10::cuda::CUDAGuard device_guard(z.device());
  const int64_t num_rows = z.size(0), latent_size = z.size(1);
  const int64_t hidden = weight_hh.size(1), positions = vocab_sizes.size(0), max_vocab = weight_out.size(1);
  TORCH_CHECK(hidden > 0 && weight_hh.size(0) == 4 * hidden, "vae_decode: weight_hh must be [4H, H], got ", weight_hh.sizes());
  TORCH_CHECK(latent_weight.size(0) == hidden && latent_weight.size(1) == latent_size,
              "vae_decode: latent_weight must be [H, d] = [", hidden, ", ", latent_size, "], got ", latent_weight.sizes());
  TORCH_CHECK(latent_bias.size(0) == hidden, "vae_decode: latent_bias must be [H] = [", hidden, "], got ", latent_bias.sizes());
  TORCH_CHECK(weight_out.size(0) == positions && weight_out.size(2) == hidden && max_vocab > 0,
              "vae_decode: weight_out must be [T, V, H] with T = ", positions, ", H = ", hidden, ", got ", weight_out.sizes());
  TORCH_CHECK(max_vocab <= kernels::kVaeDecodeCudaMaxVocab, "vae_decode (cuda): at most ", kernels::kVaeDecodeCudaMaxVocab,
              " tokens per position (one warp lane each), got V = ", max_vocab);
  TORCH_CHECK(bias_out.size(0) == positions && bias_out.size(1) == max_vocab,
              "vae_decode: bias_out must be [T, V] = [", positions, ", ", max_vocab, "], got ", bias_out.sizes());
  TORCH_CHECK(budget_mask.size(0) == positions, "vae_decode: budget_mask must be [T] = [", positions, "], got ", budget_mask.sizes());
  TORCH_CHECK(temperature > 0, "vae_decode: temperature must be > 0, got ", temperature);

  // The vocabulary sizes index input_table: checked on the host (a T-element copy and a sync; the
  // reference synchronises at every position).
  const at::Tensor vocab_host = vocab_sizes.cpu();
  const int64_t* vocab_data = vocab_host.data_ptr<int64_t>();
  int64_t vocab_total = 0;
  for (int64_t t = 0; t < positions; ++t) {
    TORCH_CHECK(vocab_data[t] >= 1 && vocab_data[t] <= max_vocab, "vae_decode: vocab_sizes[", t, "] = ", vocab_data[t],
                " is outside [1, V = ", max_vocab, "] (V = weight_out.size(1))");
    vocab_total += vocab_data[t];
  }
  TORCH_CHECK(input_table.size(0) == 1 + vocab_total && input_table.size(1) == 4 * hidden,
              "vae_decode: input_table must be [1 + sum(vocab_sizes), 4H] = [", 1 + vocab_total, ", ", 4 * hidden, "], got ",
              input_table.sizes());
  at::Tensor given;
  if (!greedy && uniforms.has_value()) {
    check_cuda(*uniforms, "uniforms", z, at::kFloat, 2);
    TORCH_CHECK(uniforms->size(0) == num_rows && uniforms->size(1) == positions, "vae_decode: uniforms must be [M, T] = [",
                num_rows, ", ", positions, "], got ", uniforms->sizes());
    given = uniforms->contiguous();
  }

  at::Tensor tokens = at::empty({num_rows, positions}, z.options().dtype(at::kLong));
  at::Tensor log_prob = at::empty({num_rows}, z.options());
  if (num_rows == 0) return {tokens, log_prob};
  const at::Tensor z_c = z.contiguous(), latent_weight_c = latent_weight.contiguous();
  const at::Tensor latent_bias_c = latent_bias.contiguous(), input_table_c = input_table.contiguous();
  const at::Tensor weight_hh_t = weight_hh.t().contiguous();  // [H, 4H], see VaeDecodeCudaProblem
  const at::Tensor weight_out_c = weight_out.contiguous(), bias_out_c = bias_out.contiguous();
  const at::Tensor vocab_c = vocab_sizes.contiguous(), budget_mask_c = budget_mask.contiguous();

  kernels::VaeDecodeCudaProblem problem{};
  problem.z = z_c.data_ptr<float>();
  problem.latent_weight = latent_weight_c.data_ptr<float>();
  problem.latent_bias = latent_bias_c.data_ptr<float>();
  problem.input_table = input_table_c.data_ptr<float>();
  problem.weight_hh_t = weight_hh_t.data_ptr<float>();
  problem.weight_out = weight_out_c.data_ptr<float>();
  problem.bias_out = bias_out_c.data_ptr<float>();
  problem.vocab_sizes = vocab_c.data_ptr<int64_t>();
  problem.budget_mask = budget_mask_c.data_ptr<bool>();
  problem.uniforms = given.defined() ? given.data_ptr<float>() : nullptr;
  problem.seed = static_cast<uint64_t>(seed);
  problem.budget_max = budget_max;
  problem.temperature = static_cast<float>(temperature);
  problem.greedy = greedy;
  problem.num_rows = num_rows;
  problem.latent_size = latent_size;
  problem.hidden = hidden;
  problem.positions = positions;
  problem.max_vocab = max_vocab;
  problem.tokens = tokens.data_ptr<int64_t>();
  problem.log_prob = log_prob.data_ptr<float>();

  const cudaError_t error = kernels::vae_decode_cuda(problem, c10::cuda::getCurrentCUDAStream());  // = at::cuda::getCurrentCUDAStream
  TORCH_CHECK(error != cudaErrorInvalidValue, "vae_decode (cuda): hidden size H = ", hidden,
              " is too large: the recurrent state of 8 rows (3 x 8 x H floats) must fit in shared memory");
  C10_CUDA_CHECK(error);
  return {tokens, log_prob};
}

}  // namespace

TORCH_LIBRARY_IMPL(vaenas, CUDA, m) { m.impl("vae_decode", &vae_decode_cuda); }

}  // namespace vaenas
