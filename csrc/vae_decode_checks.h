// Input contract of vaenas::vae_decode, shared by the CPU and CUDA bindings (binding layer: it
// includes torch headers; the kernels in csrc/kernels take raw pointers and never see it).
#pragma once

#include <ATen/ATen.h>

#include <optional>

#include "message_text.h"

namespace vaenas {

struct VaeDecodeSizes {
  int64_t num_rows, latent_size, hidden, positions, max_vocab;
};

inline void check_vae_decode_tensor(const at::Tensor& tensor, const char* name, const at::Tensor& z,
                                    at::ScalarType dtype, int64_t dim) {
  TORCH_CHECK(tensor.device() == z.device(), "vae_decode: ", name, " must be on z's device ", z.device(), ", got ",
              tensor.device());
  TORCH_CHECK(tensor.scalar_type() == dtype, "vae_decode: ", name, " must be ", dtype, ", got ", tensor.scalar_type());
  TORCH_CHECK(tensor.dim() == dim, "vae_decode: ", name, " must have ", text(dim), " dimensions, got shape ", tensor.sizes());
}

// Checks every argument against the schema's contract (vaenas/ops/reference.py::vae_decode) and
// returns the sizes. vocab_host: vocab_sizes on the CPU, since its values size input_table.
inline VaeDecodeSizes check_vae_decode_inputs(
    const at::Tensor& z, const at::Tensor& latent_weight, const at::Tensor& latent_bias, const at::Tensor& input_table,
    const at::Tensor& weight_hh, const at::Tensor& weight_out, const at::Tensor& bias_out, const at::Tensor& vocab_sizes,
    const at::Tensor& vocab_host, const at::Tensor& budget_mask, const std::optional<at::Tensor>& uniforms,
    double temperature, bool greedy) {
  check_vae_decode_tensor(z, "z", z, at::kFloat, 2);
  check_vae_decode_tensor(latent_weight, "latent_weight", z, at::kFloat, 2);
  check_vae_decode_tensor(latent_bias, "latent_bias", z, at::kFloat, 1);
  check_vae_decode_tensor(input_table, "input_table", z, at::kFloat, 2);
  check_vae_decode_tensor(weight_hh, "weight_hh", z, at::kFloat, 2);
  check_vae_decode_tensor(weight_out, "weight_out", z, at::kFloat, 3);
  check_vae_decode_tensor(bias_out, "bias_out", z, at::kFloat, 2);
  check_vae_decode_tensor(vocab_sizes, "vocab_sizes", z, at::kLong, 1);
  check_vae_decode_tensor(budget_mask, "budget_mask", z, at::kBool, 1);
  const VaeDecodeSizes sizes{z.size(0), z.size(1), weight_hh.size(1), vocab_sizes.size(0), weight_out.size(1)};
  const int64_t hidden = sizes.hidden, positions = sizes.positions, max_vocab = sizes.max_vocab;
  TORCH_CHECK(hidden > 0 && weight_hh.size(0) == 4 * hidden, "vae_decode: weight_hh must be [4H, H], got ", text(weight_hh.sizes()));
  TORCH_CHECK(latent_weight.size(0) == hidden && latent_weight.size(1) == sizes.latent_size,
              "vae_decode: latent_weight must be [H, d] = [", text(hidden), ", ", text(sizes.latent_size), "], got ",
              text(latent_weight.sizes()));
  TORCH_CHECK(latent_bias.size(0) == hidden, "vae_decode: latent_bias must be [H] = [", text(hidden), "], got ", text(latent_bias.sizes()));
  TORCH_CHECK(weight_out.size(0) == positions && weight_out.size(2) == hidden && max_vocab > 0,
              "vae_decode: weight_out must be [T, V, H] with T = ", text(positions), ", H = ", text(hidden), ", got ",
              text(weight_out.sizes()));
  TORCH_CHECK(bias_out.size(0) == positions && bias_out.size(1) == max_vocab,
              "vae_decode: bias_out must be [T, V] = [", text(positions), ", ", text(max_vocab), "], got ",
              text(bias_out.sizes()));
  TORCH_CHECK(budget_mask.size(0) == positions, "vae_decode: budget_mask must be [T] = [", text(positions), "], got ",
              text(budget_mask.sizes()));
  TORCH_CHECK(temperature > 0, "vae_decode: temperature must be > 0, got ", text(temperature));

  const int64_t* vocab_data = vocab_host.data_ptr<int64_t>();
  int64_t vocab_total = 0;
  for (int64_t t = 0; t < positions; ++t) {
    TORCH_CHECK(vocab_data[t] >= 1 && vocab_data[t] <= max_vocab, "vae_decode: vocab_sizes[", text(t), "] = ", text(vocab_data[t]),
                " is outside [1, V = ", text(max_vocab), "] (V = weight_out.size(1))");
    vocab_total += vocab_data[t];
  }
  TORCH_CHECK(input_table.size(0) == 1 + vocab_total && input_table.size(1) == 4 * hidden,
              "vae_decode: input_table must be [1 + sum(vocab_sizes), 4H] = [", text(1 + vocab_total), ", ", text(4 * hidden),
              "], got ", text(input_table.sizes()));
  if (!greedy && uniforms.has_value()) {
    check_vae_decode_tensor(*uniforms, "uniforms", z, at::kFloat, 2);
    TORCH_CHECK(uniforms->size(0) == sizes.num_rows && uniforms->size(1) == positions,
                "vae_decode: uniforms must be [M, T] = [", text(sizes.num_rows), ", ", text(positions), "], got ",
                text(uniforms->sizes()));
  }
  return sizes;
}

}  // namespace vaenas
