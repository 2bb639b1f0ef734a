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
#include "vae_decode_checks.h"
#include "message_text.h"

namespace vaenas {
namespace {

std::tuple<at::Tensor, at::Tensor> vae_decode_cuda(
    const at::Tensor& z, const at::Tensor& latent_weight, const at::Tensor& latent_bias, const at::Tensor& input_table,
    const at::Tensor& weight_hh, const at::Tensor& weight_out, const at::Tensor& bias_out, const at::Tensor& vocab_sizes,
    const at::Tensor& budget_mask, int64_t budget_max, const std::optional<at::Tensor>& uniforms, double temperature,
    bool greedy, int64_t seed) {
  TORCH_CHECK(z.is_cuda(), "vae_decode (cuda): z must be a CUDA tensor, got ", z.device());
  // The vocabulary sizes index input_table: checked on the host (a T-element copy and a sync; the
  // reference synchronises at every position).
  const VaeDecodeSizes sizes = check_vae_decode_inputs(z, latent_weight, latent_bias, input_table, weight_hh, weight_out,
                                                       bias_out, vocab_sizes, vocab_sizes.cpu(), budget_mask, uniforms,
                                                       temperature, greedy);
  TORCH_CHECK(sizes.max_vocab <= kernels::kVaeDecodeCudaMaxVocab, "vae_decode (cuda): at most ",
              text(int64_t(kernels::kVaeDecodeCudaMaxVocab)), " tokens per position (one warp lane each), got V = ",
              text(sizes.max_vocab));
  const c10::cuda::CUDAGuard device_guard(z.device());
  const int64_t num_rows = sizes.num_rows, positions = sizes.positions, hidden = sizes.hidden;
  at::Tensor given;
  if (!greedy && uniforms.has_value()) given = uniforms->contiguous();

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
  problem.latent_size = sizes.latent_size;
  problem.hidden = hidden;
  problem.positions = positions;
  problem.max_vocab = sizes.max_vocab;
  problem.tokens = tokens.data_ptr<int64_t>();
  problem.log_prob = log_prob.data_ptr<float>();

  const cudaError_t error = kernels::vae_decode_cuda(problem, c10::cuda::getCurrentCUDAStream());  // = at::cuda::getCurrentCUDAStream
  TORCH_CHECK(error != cudaErrorInvalidValue, "vae_decode (cuda): hidden size H = ", text(hidden),
              " is too large: the recurrent state of 8 rows (3 x 8 x H floats) must fit in shared memory");
  C10_CUDA_CHECK(error);
  return {tokens, log_prob};
}

}  // namespace

TORCH_LIBRARY_IMPL(vaenas, CUDA, m) { m.impl("vae_decode", &vae_decode_cuda); }

}  // namespace vaenas
