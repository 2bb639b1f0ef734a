// CPU implementation of vaenas::vae_decode (schema: csrc/ops.cpp; specification:
// vaenas/ops/reference.py::vae_decode). Checks the inputs, packs the weights once, then decodes
// row ranges on at::parallel_for threads with the torch-free kernel csrc/kernels/vae_decode_cpu.
#include <ATen/ATen.h>
#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <optional>
#include <tuple>

#include "kernels/vae_decode_cpu.h"
#include "vae_decode_checks.h"

namespace vaenas {
namespace {

std::tuple<at::Tensor, at::Tensor> vae_decode_cpu(
    const at::Tensor& z, const at::Tensor& latent_weight, const at::Tensor& latent_bias, const at::Tensor& input_table,
    const at::Tensor& weight_hh, const at::Tensor& weight_out, const at::Tensor& bias_out, const at::Tensor& vocab_sizes,
    const at::Tensor& budget_mask, int64_t budget_max, const std::optional<at::Tensor>& uniforms, double temperature,
    bool greedy, int64_t seed) {
  TORCH_CHECK(z.device().is_cpu(), "vae_decode (cpu): z must be a CPU tensor, got ", z.device());
  const at::Tensor vocab = vocab_sizes.contiguous();
  const VaeDecodeSizes sizes = check_vae_decode_inputs(z, latent_weight, latent_bias, input_table, weight_hh, weight_out,
                                                       bias_out, vocab_sizes, vocab, budget_mask, uniforms, temperature,
                                                       greedy);
  const int64_t num_rows = sizes.num_rows, positions = sizes.positions;

  at::Tensor random;
  if (!greedy) {
    if (uniforms.has_value()) {
      random = uniforms->contiguous();
    } else {
      // The reference's torch.rand(M, T, generator=torch.Generator('cpu').manual_seed(seed)).
      at::Generator generator = at::detail::createCPUGenerator(static_cast<uint64_t>(seed));
      random = at::rand({num_rows, positions}, generator, z.options());
    }
  }

  at::Tensor tokens = at::empty({num_rows, positions}, z.options().dtype(at::kLong));
  at::Tensor log_prob = at::empty({num_rows}, z.options());
  if (num_rows == 0) return {tokens, log_prob};
  const at::Tensor z_c = z.contiguous(), latent_weight_c = latent_weight.contiguous();
  const at::Tensor latent_bias_c = latent_bias.contiguous(), input_table_c = input_table.contiguous();
  const at::Tensor weight_hh_c = weight_hh.contiguous(), weight_out_c = weight_out.contiguous();
  const at::Tensor bias_out_c = bias_out.contiguous(), budget_mask_c = budget_mask.contiguous();

  kernels::VaeDecodeProblem problem{};
  problem.z = z_c.data_ptr<float>();
  problem.latent_weight = latent_weight_c.data_ptr<float>();
  problem.latent_bias = latent_bias_c.data_ptr<float>();
  problem.input_table = input_table_c.data_ptr<float>();
  problem.weight_hh = weight_hh_c.data_ptr<float>();
  problem.weight_out = weight_out_c.data_ptr<float>();
  problem.bias_out = bias_out_c.data_ptr<float>();
  problem.vocab_sizes = vocab.data_ptr<int64_t>();
  problem.budget_mask = budget_mask_c.data_ptr<bool>();
  problem.uniforms = greedy ? nullptr : random.data_ptr<float>();
  problem.budget_max = budget_max;
  problem.temperature = static_cast<float>(temperature);
  problem.greedy = greedy;
  problem.num_rows = num_rows;
  problem.latent_size = sizes.latent_size;
  problem.hidden = sizes.hidden;
  problem.positions = positions;
  problem.max_vocab = sizes.max_vocab;
  problem.table_rows = input_table.size(0);
  problem.tokens = tokens.data_ptr<int64_t>();
  problem.log_prob = log_prob.data_ptr<float>();

  at::Tensor workspace = at::empty({kernels::vae_decode_cpu_workspace_size(problem)}, z.options());
  kernels::vae_decode_cpu_pack(problem, workspace.data_ptr<float>());
  const float* packed = workspace.data_ptr<float>();
  // 96 rows per grain: a few kernel tiles, small next to M = 10,000 split over the threads.
  at::parallel_for(0, num_rows, 96, [&](int64_t begin, int64_t end) {
    kernels::vae_decode_cpu_rows(problem, packed, begin, end);
  });
  return {tokens, log_prob};
}

}  // namespace

TORCH_LIBRARY_IMPL(vaenas, CPU, m) { m.impl("vae_decode", &vae_decode_cpu); }

}  // namespace vaenas
