// Native test of the NAS-Bench-101 enumeration kernel (ctest; exit code 0 = pass).
#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>

#include "kernels/nb101_enumerate.h"

namespace {

int failures = 0;

void expect(bool condition, const std::string& what) {
  if (!condition) {
    std::fprintf(stderr, "FAIL: %s\n", what.c_str());
    ++failures;
  }
}

std::string md5_of(const std::string& text) {
  uint8_t digest[16];
  vaenas::kernels::md5(reinterpret_cast<const uint8_t*>(text.data()), text.size(), digest);
  return vaenas::kernels::md5_hex(digest);
}

void test_md5_rfc1321_suite() {
  // RFC 1321 appendix A.5; the last two cross the 56-byte padding boundary and the 64-byte block.
  expect(md5_of("") == "d41d8cd98f00b204e9800998ecf8427e", "md5('')");
  expect(md5_of("abc") == "900150983cd24fb0d6963f7d28e17f72", "md5('abc')");
  expect(md5_of("message digest") == "f96b697d7cb7938d525a2f31aaf161d0", "md5('message digest')");
  expect(md5_of("abcdefghijklmnopqrstuvwxyz") == "c3fcd3d76192e4007dfb496cca67e13b", "md5(a..z)");
  expect(md5_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") ==
             "d174ab98d277d9f5a5611c2c9f419d9f",
         "md5(62 characters)");
  expect(md5_of("12345678901234567890123456789012345678901234567890123456789012345678901234567890") ==
             "57edf4a22be3c955ac49da2e2107b67a",
         "md5(80 digits)");
}

void test_fingerprint_of_a_published_cell() {
  // Row 1 of nb101_1k_with_specs.csv.gz: 7 vertices, upper-triangle bits 100110100001001010101.
  const char* bits = "100110100001001010101";
  const int8_t labels[7] = {-1, 0, 2, 0, 0, 1, -2};
  uint8_t matrix[49] = {};
  int k = 0;
  for (int i = 0; i < 7; ++i) {
    for (int j = i + 1; j < 7; ++j) matrix[i * 7 + j] = bits[k++] == '1';
  }
  uint8_t digest[16];
  vaenas::kernels::nb101_fingerprint(matrix, labels, 7, digest);
  expect(vaenas::kernels::md5_hex(digest) == "00005c142e6f48ac74fdcf73e3439874", "fingerprint of the published cell");
}

void test_arch_fingerprint_prunes_then_hashes() {
  // The published cell above in the 26-token encoding: its fingerprint is unchanged.
  int64_t tokens[26] = {};
  const char* bits = "100110100001001010101";
  for (int t = 0; t < 21; ++t) tokens[t] = bits[t] == '1';
  const int64_t ops[5] = {0, 2, 0, 0, 1};
  for (int t = 0; t < 5; ++t) tokens[21 + t] = ops[t];
  uint8_t digest[16];
  expect(vaenas::kernels::nb101_arch_fingerprint(tokens, digest), "a connected cell has a fingerprint");
  expect(vaenas::kernels::md5_hex(digest) == "00005c142e6f48ac74fdcf73e3439874", "26-token published cell");

  // Chain 0 -> 1 -> 6 with a dangling vertex 2 (0 -> 2, no way out) and 3 -> 4 unreachable:
  // hashed as the pruned 3-vertex chain input -> conv1x1 -> output.
  int64_t chain[26] = {};
  chain[0] = 1;   // 0 -> 1
  chain[1] = 1;   // 0 -> 2
  chain[10] = 1;  // 1 -> 6
  chain[15] = 1;  // 3 -> 4
  chain[21] = 1;  // vertex 1: conv1x1
  chain[22] = 2;  // vertex 2: maxpool (pruned)
  const uint8_t pruned[9] = {0, 1, 0, 0, 0, 1, 0, 0, 0};
  const int8_t labels[3] = {-1, 1, -2};
  uint8_t expected[16];
  vaenas::kernels::nb101_fingerprint(pruned, labels, 3, expected);
  expect(vaenas::kernels::nb101_arch_fingerprint(chain, digest) && std::memcmp(digest, expected, 16) == 0,
         "dangling and unreachable vertices are pruned before hashing");

  // No path from the input to the output: false and a zero digest.
  int64_t cut[26] = {};
  cut[0] = 1;   // 0 -> 1
  cut[20] = 1;  // 5 -> 6
  const uint8_t zeros[16] = {};
  std::memset(digest, 0xff, 16);
  expect(!vaenas::kernels::nb101_arch_fingerprint(cut, digest) && std::memcmp(digest, zeros, 16) == 0,
         "a disconnected cell gives false and 16 zero bytes");
}

void test_counts_for_small_limits() {
  // Counts of the pure-Python generate_graph.py port (vaenas.spaces.nasbench101_graph).
  struct Case {
    int max_vertices, max_edges;
    int64_t count;
  };
  const Case cases[] = {{2, 9, 1}, {3, 9, 7}, {4, 9, 91}, {5, 9, 2532}, {5, 4, 76}, {6, 5, 415}};
  for (const Case& c : cases) {
    const auto cells = vaenas::kernels::nb101_enumerate(c.max_vertices, c.max_edges);
    expect(cells.size() == c.count, "count for max_vertices=" + std::to_string(c.max_vertices) +
                                         " max_edges=" + std::to_string(c.max_edges) + ": got " +
                                         std::to_string(cells.size()) + ", want " + std::to_string(c.count));
    bool padded = true;
    for (int64_t i = 0; i < cells.size(); ++i) {
      const int n = int(cells.num_vertices[i]);
      const int8_t* labels = cells.labels.data() + i * 7;
      padded = padded && labels[0] == -1 && labels[n - 1] == -2 && (n == 7 || labels[6] == -3);
    }
    expect(padded, "labels -1 input, -2 output, -3 padding");
  }
}

void test_bad_arguments_throw() {
  bool threw = false;
  try {
    vaenas::kernels::nb101_enumerate(8, 9);
  } catch (const std::invalid_argument&) {
    threw = true;
  }
  expect(threw, "max_vertices = 8 throws std::invalid_argument");
}

}  // namespace

int main() {
  test_md5_rfc1321_suite();
  test_fingerprint_of_a_published_cell();
  test_arch_fingerprint_prunes_then_hashes();
  test_counts_for_small_limits();
  test_bad_arguments_throw();
  if (failures == 0) std::printf("test_nb101_enumerate: all passed\n");
  return failures == 0 ? 0 : 1;
}
