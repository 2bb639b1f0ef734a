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

namespace vaenas {
namespace {

void check_cpu(const at::Tensor& tensor, const char* name, at::ScalarType dtype, int64_t dim) {
  TORCH_CHECK(tensor.device().is_cpu(), "vae_decode (cpu): ", name, " must be a CPU tensor, got ", tensor.device());
  TORCH_CHECK(tensor.scalar_type() == dtype, "vae_decode: ", name, " must be ", dtype, ", got ", tensor.scalar_type());
  TORCH_CHECK(tensor.dim() == dim, "vae_decode: ", name, " must have ", dim, " dimensions, got shape ", tensor.sizes());
}

std::tuple<at::Tensor, at::Tensor> vae_decode_cpu(
    const at::Tensor& z, const at::Tensor& latent_weight, const at::Tensor& latent_bias, const at::Tensor& input_table,
    const at::Tensor& weight_hh, const at::Tensor& weight_out, const at::Tensor& bias_out, const at::Tensor& vocab_sizes,
    const at::Tensor& budget_mask, int64_t budget_max, const std::optional<at::Tensor>& uniforms, double temperature,
    bool greedy, int64_t seed) {
  check_cpu(z, "z", at::kFloat, 2);
  check_cpu(latent_weight, "latent_weight", at::kFloat, 2);
  check_cpu(latent_bias, "latent_bias", at::kFloat, 1);
  check_cpu(input_table, "input_table", at::kFloat, 2);
  check_cpu(weight_hh, "weight_hh", at::kFloat, 2);
  check_cpu(weight_out, "weight_out", at::kFloat, 3);
  check_cpu(bias_out, "bias_out", at::kFloat, 2);
  check_cpu(vocab_sizes, "vocab_sizes", at::kLong, 1);
  check_cpu(budget_mask, "budget_mask", at::kBool, 1);
  const int64_t num_rows = z.size(0), latent_size = z.size(1);
  const int64_t hidden = weight_hh.size(1), positions = vocab_sizes.size(0), max_vocab = weight_out.size(1);
  TORCH_CHECK(hidden > 0 && weight_hh.size(0) == 4 * hidden, "vae_decode: weight_hh must be [4H, H], got ", weight_hh.sizes());
  TORCH_CHECK(latent_weight.size(0) == hidden && latent_weight.size(1) == latent_size,
              "vae_decode: latent_weight must be [H, d] = [", hidden, ", ", latent_size, "], got ", latent_weight.sizes());
  TORCH_CHECK(latent_bias.size(0) == hidden, "vae_decode: latent_bias must be [H] = [", hidden, "], got ", latent_bias.sizes());
  TORCH_CHECK(weight_out.size(0) == positions && weight_out.size(2) == hidden && max_vocab > 0,
              "vae_decode: weight_out must be [T, V, H] with T = ", positions, ", H = ", hidden, ", got ", weight_out.sizes());
  TORCH_CHECK(bias_out.size(0) == positions && bias_out.size(1) == max_vocab,
              "vae_decode: bias_out must be [T, V] = [", positions, ", ", max_vocab, "], got ", bias_out.sizes());
  TORCH_CHECK(budget_mask.size(0) == positions, "vae_decode: budget_mask must be [T] = [", positions, "], got ", budget_mask.sizes());
  TORCH_CHECK(temperature > 0, "vae_decode: temperature must be > 0, got ", temperature);

  const at::Tensor vocab = vocab_sizes.contiguous();
  const int64_t* vocab_data = vocab.data_ptr<int64_t>();
  int64_t vocab_total = 0;
  for (int64_t t = 0; t < positions; ++t) {
    TORCH_CHECK(vocab_data[t] >= 1 && vocab_data[t] <= max_vocab, "vae_decode: vocab_sizes[", t, "] = ", vocab_data[t],
                " is outside [1, V = ", max_vocab, "] (V = weight_out.size(1))");
    vocab_total += vocab_data[t];
  }
  TORCH_CHECK(input_table.size(0) == 1 + vocab_total && input_table.size(1) == 4 * hidden,
              "vae_decode: input_table must be [1 + sum(vocab_sizes), 4H] = [", 1 + vocab_total, ", ", 4 * hidden, "], got ",
              input_table.sizes());

  at::Tensor random;
  if (!greedy) {
    if (uniforms.has_value()) {
      check_cpu(*uniforms, "uniforms", at::kFloat, 2);
      TORCH_CHECK(uniforms->size(0) == num_rows && uniforms->size(1) == positions, "vae_decode: uniforms must be [M, T] = [",
                  num_rows, ", ", positions, "], got ", uniforms->sizes());
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
  problem.vocab_sizes = vocab_data;
  problem.budget_mask = budget_mask_c.data_ptr<bool>();
  problem.uniforms = greedy ? nullptr : random.data_ptr<float>();
  problem.budget_max = budget_max;
  problem.temperature = static_cast<float>(temperature);
  problem.greedy = greedy;
  problem.num_rows = num_rows;
  problem.latent_size = latent_size;
  problem.hidden = hidden;
  problem.positions = positions;
  problem.max_vocab = max_vocab;
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
