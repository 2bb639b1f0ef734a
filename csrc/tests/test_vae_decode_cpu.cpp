// Native test of the CPU decode kernel (no torch): a decode whose answer is known by hand, the
// NAS-Bench-101 edge budget, and random problems against a naive double-precision loop.
// Exit code 0 = pass.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <vector>

#include "kernels/vae_decode_cpu.h"

namespace {

using vaenas::kernels::VaeDecodeProblem;

int failures = 0;

void expect(bool condition, const char* what) {
  if (!condition) {
    std::printf("FAIL: %s\n", what);
    ++failures;
  }
}

struct Decoder {
  int64_t latent_size, hidden, max_vocab;
  std::vector<int64_t> vocab;
  std::vector<bool> budget_mask_bits;
  std::vector<float> latent_weight, latent_bias, input_table, weight_hh, weight_out, bias_out;
  std::unique_ptr<bool[]> budget_mask;

  int64_t positions() const { return static_cast<int64_t>(vocab.size()); }
  int64_t table_rows() const {
    int64_t total = 1;
    for (int64_t v : vocab) total += v;
    return total;
  }
};

Decoder make_decoder(int64_t latent_size, int64_t hidden, std::vector<int64_t> vocab, std::vector<bool> budget,
                     std::mt19937* random, float scale) {
  Decoder decoder;
  decoder.latent_size = latent_size;
  decoder.hidden = hidden;
  decoder.max_vocab = 0;
  for (int64_t v : vocab) decoder.max_vocab = std::max(decoder.max_vocab, v);
  decoder.vocab = vocab;
  decoder.budget_mask_bits = budget;
  std::normal_distribution<float> normal(0.0f, scale);
  auto fill = [&](std::vector<float>* values, int64_t size) {
    values->resize(size);
    for (float& value : *values) value = random ? normal(*random) : 0.0f;
  };
  const int64_t t = decoder.positions();
  fill(&decoder.latent_weight, hidden * latent_size);
  fill(&decoder.latent_bias, hidden);
  fill(&decoder.input_table, decoder.table_rows() * 4 * hidden);
  fill(&decoder.weight_hh, 4 * hidden * hidden);
  fill(&decoder.weight_out, t * decoder.max_vocab * hidden);
  fill(&decoder.bias_out, t * decoder.max_vocab);
  decoder.budget_mask.reset(new bool[t]);
  for (int64_t i = 0; i < t; ++i) decoder.budget_mask[i] = budget[i];
  return decoder;
}

VaeDecodeProblem make_problem(const Decoder& decoder, const std::vector<float>& z, const std::vector<float>* uniforms,
                              int64_t budget_max, float temperature, std::vector<int64_t>* tokens, std::vector<float>* log_prob) {
  const int64_t rows = static_cast<int64_t>(z.size()) / decoder.latent_size;
  tokens->assign(rows * decoder.positions(), -1);
  log_prob->assign(rows, NAN);
  VaeDecodeProblem problem{};
  problem.z = z.data();
  problem.latent_weight = decoder.latent_weight.data();
  problem.latent_bias = decoder.latent_bias.data();
  problem.input_table = decoder.input_table.data();
  problem.weight_hh = decoder.weight_hh.data();
  problem.weight_out = decoder.weight_out.data();
  problem.bias_out = decoder.bias_out.data();
  problem.vocab_sizes = decoder.vocab.data();
  problem.budget_mask = decoder.budget_mask.get();
  problem.uniforms = uniforms ? uniforms->data() : nullptr;
  problem.budget_max = budget_max;
  problem.temperature = temperature;
  problem.greedy = uniforms == nullptr;
  problem.num_rows = rows;
  problem.latent_size = decoder.latent_size;
  problem.hidden = decoder.hidden;
  problem.positions = decoder.positions();
  problem.max_vocab = decoder.max_vocab;
  problem.table_rows = decoder.table_rows();
  problem.tokens = tokens->data();
  problem.log_prob = log_prob->data();
  return problem;
}

// The reference's recurrence for one row, written as plainly as possible, in double.
void naive_decode_row(const Decoder& d, const float* z, const float* uniforms, int64_t budget_max, double temperature,
                      int64_t* tokens, double* log_prob) {
  const int64_t hidden = d.hidden, t_count = d.positions();
  std::vector<double> h(hidden), c(hidden, 0.0), gates(4 * hidden), logits(d.max_vocab);
  for (int64_t j = 0; j < hidden; ++j) {
    double sum = d.latent_bias[j];
    for (int64_t k = 0; k < d.latent_size; ++k) sum += double(z[k]) * d.latent_weight[j * d.latent_size + k];
    h[j] = std::tanh(sum);
  }
  auto sigmoid = [](double x) { return 1.0 / (1.0 + std::exp(-x)); };
  int64_t row = 0, offset = 0, used = 0;
  *log_prob = 0.0;
  for (int64_t t = 0; t < t_count; ++t) {
    for (int64_t g = 0; g < 4 * hidden; ++g) {
      double sum = d.input_table[row * 4 * hidden + g];
      for (int64_t k = 0; k < hidden; ++k) sum += double(d.weight_hh[g * hidden + k]) * h[k];
      gates[g] = sum;
    }
    for (int64_t j = 0; j < hidden; ++j) {
      c[j] = sigmoid(gates[hidden + j]) * c[j] + sigmoid(gates[j]) * std::tanh(gates[2 * hidden + j]);
      h[j] = sigmoid(gates[3 * hidden + j]) * std::tanh(c[j]);
    }
    const bool exhausted = d.budget_mask[t] && used >= budget_max;
    double maximum = -INFINITY;
    for (int64_t k = 0; k < d.max_vocab; ++k) {
      double sum = d.bias_out[t * d.max_vocab + k];
      for (int64_t j = 0; j < hidden; ++j) sum += double(d.weight_out[(t * d.max_vocab + k) * hidden + j]) * h[j];
      const bool allowed = k < d.vocab[t] && !(exhausted && k != 0);
      logits[k] = allowed ? sum / temperature : -INFINITY;
      maximum = std::max(maximum, logits[k]);
    }
    double total = 0.0;
    for (int64_t k = 0; k < d.max_vocab; ++k) total += std::exp(logits[k] - maximum);
    int64_t token = 0;
    if (uniforms == nullptr) {
      for (int64_t k = 1; k < d.max_vocab; ++k) token = logits[k] > logits[token] ? k : token;
    } else {
      double cumulative = 0.0;
      int64_t last_allowed = 0;
      token = -1;
      for (int64_t k = 0; k < d.max_vocab; ++k) {
        if (!std::isfinite(logits[k])) continue;
        cumulative += std::exp(logits[k] - maximum) / total;
        last_allowed = k;
        if (token < 0 && cumulative > uniforms[t]) token = k;
      }
      if (token < 0) token = last_allowed;
    }
    tokens[t] = token;
    *log_prob += logits[token] - maximum - std::log(total);
    if (d.budget_mask[t] && token != 0) ++used;
    row = 1 + offset + token;
    offset += d.vocab[t];
  }
}

// All weights zero: h stays 0, the logits are bias_out, so greedy picks argmax(bias_out[t]) and
// log_prob = sum of log_softmax(bias_out[t])[token], until the budget forces token 0 (log p = 0).
void test_known_answer() {
  Decoder decoder = make_decoder(3, 5, {2, 2, 2, 3}, {true, true, true, false}, nullptr, 0.0f);
  // [T = 4, V = 3]; the 5.0 of token 2 at the 2-token positions must be masked out.
  decoder.bias_out = {0.0f, 1.0f, 5.0f, 0.0f, 1.0f, 5.0f, 0.0f, 1.0f, 5.0f, 0.5f, 0.0f, 2.0f};
  const std::vector<float> z = {0.3f, -1.0f, 2.0f, 1.0f, 1.0f, 1.0f};
  std::vector<int64_t> tokens;
  std::vector<float> log_prob;
  vaenas::kernels::vae_decode_cpu(make_problem(decoder, z, nullptr, 2, 1.0f, &tokens, &log_prob));
  const std::vector<int64_t> expected = {1, 1, 0, 2};  // the third edge is over the budget of 2
  const double edge = std::log(std::exp(1.0) / (1.0 + std::exp(1.0)));
  const double last = 2.0 - std::log(std::exp(0.5) + 1.0 + std::exp(2.0));
  for (int row = 0; row < 2; ++row) {
    for (int t = 0; t < 4; ++t) expect(tokens[row * 4 + t] == expected[t], "known answer: greedy tokens");
    expect(std::fabs(log_prob[row] - (2 * edge + last)) < 1e-5, "known answer: greedy log_prob");
  }
  // Sampled: u = 0.999 falls in the last allowed token; u = 0 takes the first one with p > 0.
  const std::vector<float> uniforms = {0.999f, 0.999f, 0.999f, 0.999f, 0.0f, 0.0f, 0.0f, 0.0f};
  vaenas::kernels::vae_decode_cpu(make_problem(decoder, z, &uniforms, 2, 1.0f, &tokens, &log_prob));
  const std::vector<int64_t> expected_sampled = {1, 1, 0, 2, 0, 0, 0, 0};
  for (int i = 0; i < 8; ++i) expect(tokens[i] == expected_sampled[i], "known answer: sampled tokens");
}

void test_random_against_naive(int64_t hidden, std::vector<int64_t> vocab, std::vector<bool> budget, int64_t budget_max,
                               bool greedy, float temperature) {
  std::mt19937 random(1234 + hidden);
  const int64_t rows = 103, latent_size = 7;
  Decoder decoder = make_decoder(latent_size, hidden, vocab, budget, &random, 1.0f / std::sqrt(float(hidden)) * 1.5f);
  std::normal_distribution<float> normal;
  std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
  std::vector<float> z(rows * latent_size), uniforms(rows * decoder.positions());
  for (float& value : z) value = normal(random);
  for (float& value : uniforms) value = uniform(random);
  std::vector<int64_t> tokens;
  std::vector<float> log_prob;
  vaenas::kernels::vae_decode_cpu(make_problem(decoder, z, greedy ? nullptr : &uniforms, budget_max, temperature, &tokens, &log_prob));
  int mismatched_rows = 0;
  double worst = 0.0;
  std::vector<int64_t> expected(decoder.positions());
  for (int64_t row = 0; row < rows; ++row) {
    double expected_log_prob = 0.0;
    naive_decode_row(decoder, z.data() + row * latent_size, greedy ? nullptr : uniforms.data() + row * decoder.positions(),
                     budget_max, temperature, expected.data(), &expected_log_prob);
    int64_t used = 0;
    bool same = true;
    for (int64_t t = 0; t < decoder.positions(); ++t) {
      same = same && tokens[row * decoder.positions() + t] == expected[t];
      if (decoder.budget_mask[t] && tokens[row * decoder.positions() + t] != 0) ++used;
    }
    expect(budget_max < 0 || used <= budget_max, "random: budget respected");
    if (!same) {
      ++mismatched_rows;
    } else {
      worst = std::max(worst, std::fabs(log_prob[row] - expected_log_prob));
    }
  }
  // A float32 decode may leave the double one only where a uniform or a near-tie sits within
  // rounding of a boundary: with 103 rows, expect none.
  if (mismatched_rows != 0 || worst > 1e-3) {
    std::printf("H=%lld greedy=%d: %d of %lld rows differ, worst log_prob error %g\n", (long long)hidden, greedy,
                mismatched_rows, (long long)rows, worst);
  }
  expect(mismatched_rows == 0, "random: tokens equal the naive double-precision decode");
  expect(worst < 1e-3, "random: log_prob close to the naive double-precision decode");
}

}  // namespace

int main() {
  test_known_answer();
  std::vector<int64_t> nb101_vocab(21, 2);
  nb101_vocab.insert(nb101_vocab.end(), 5, 3);
  std::vector<bool> nb101_budget(21, true);
  nb101_budget.insert(nb101_budget.end(), 5, false);
  for (int64_t hidden : {1, 20, 64}) {
    for (bool greedy : {true, false}) {
      test_random_against_naive(hidden, nb101_vocab, nb101_budget, 9, greedy, 1.0f);
      test_random_against_naive(hidden, std::vector<int64_t>(28, 8), std::vector<bool>(28, false), -1, greedy, 0.7f);
    }
  }
  if (failures == 0) std::printf("test_vae_decode_cpu: all passed\n");
  return failures == 0 ? 0 : 1;
}
