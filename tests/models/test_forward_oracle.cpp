// The decoder's per-token log-probs against a naive scalar-loop Qwen written here from the HF
// modelling code's equations, on checkpoints this test writes by hand (own safetensors bytes).
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <cmath>
#include <map>

#include "models/checkpoint.h"
#include "models/logprobs.h"
#include "tests/test_util.h"

namespace {

struct OracleConfig {
  std::string model_type;
  int vocab, hidden, inter, layers, heads, kv_heads, head_dim;
  bool bias, qk_norm, tied;
  double theta, eps;
  std::string dtype;  // storage: "F32" or "BF16"
};

using Weights = std::map<std::string, std::vector<double>>;

// Random weights (rounded to the storage dtype, so the oracle sees exactly what is stored), the
// checkpoint folder, and the weights as doubles for the oracle.
Weights write_checkpoint(const OracleConfig& c, const std::string& dir, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  std::vector<test::RawTensor> tensors;
  Weights weights;
  auto add = [&](const std::string& name, std::vector<int64_t> shape, float scale, float offset) {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    test::RawTensor t{name, c.dtype, shape, {}};
    for (int64_t i = 0; i < n; ++i) {
      float v = offset + scale * uniform(rng);
      if (c.dtype == "BF16") v = test::from_bf16_bits(test::to_bf16_bits(v));
      t.values.push_back(v);
    }
    weights[name] = std::vector<double>(t.values.begin(), t.values.end());
    tensors.push_back(t);
  };
  const int q_out = c.heads * c.head_dim, kv_out = c.kv_heads * c.head_dim;
  add("model.embed_tokens.weight", {c.vocab, c.hidden}, 1.0f, 0.0f);
  for (int l = 0; l < c.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    add(p + "input_layernorm.weight", {c.hidden}, 0.2f, 1.0f);
    add(p + "post_attention_layernorm.weight", {c.hidden}, 0.2f, 1.0f);
    add(p + "self_attn.q_proj.weight", {q_out, c.hidden}, 0.3f, 0.0f);
    add(p + "self_attn.k_proj.weight", {kv_out, c.hidden}, 0.3f, 0.0f);
    add(p + "self_attn.v_proj.weight", {kv_out, c.hidden}, 0.3f, 0.0f);
    add(p + "self_attn.o_proj.weight", {c.hidden, q_out}, 0.3f, 0.0f);
    if (c.bias) {
      add(p + "self_attn.q_proj.bias", {q_out}, 0.5f, 0.0f);
      add(p + "self_attn.k_proj.bias", {kv_out}, 0.5f, 0.0f);
      add(p + "self_attn.v_proj.bias", {kv_out}, 0.5f, 0.0f);
    }
    if (c.qk_norm) {
      add(p + "self_attn.q_norm.weight", {c.head_dim}, 0.2f, 1.0f);
      add(p + "self_attn.k_norm.weight", {c.head_dim}, 0.2f, 1.0f);
    }
    add(p + "mlp.gate_proj.weight", {c.inter, c.hidden}, 0.3f, 0.0f);
    add(p + "mlp.up_proj.weight", {c.inter, c.hidden}, 0.3f, 0.0f);
    add(p + "mlp.down_proj.weight", {c.hidden, c.inter}, 0.3f, 0.0f);
  }
  add("model.norm.weight", {c.hidden}, 0.2f, 1.0f);
  if (!c.tied) add("lm_head.weight", {c.vocab, c.hidden}, 0.5f, 0.0f);

  test::fs::create_directories(dir);
  test::write_safetensors_by_hand(dir + "/model.safetensors", tensors);
  nlohmann::json config = {{"model_type", c.model_type},
                           {"vocab_size", c.vocab},
                           {"hidden_size", c.hidden},
                           {"intermediate_size", c.inter},
                           {"num_hidden_layers", c.layers},
                           {"num_attention_heads", c.heads},
                           {"num_key_value_heads", c.kv_heads},
                           {"rope_theta", c.theta},
                           {"rms_norm_eps", c.eps},
                           {"tie_word_embeddings", c.tied},
                           {"hidden_act", "silu"},
                           {"max_position_embeddings", 512},
                           {"torch_dtype", c.dtype == "BF16" ? "bfloat16" : "float32"}};
  if (c.model_type == "qwen3") {
    config["head_dim"] = c.head_dim;
    config["attention_bias"] = c.bias;
  }
  test::write_text(dir + "/config.json", config.dump(2));
  return weights;
}

// ---- the naive oracle: plain loops, doubles, one sequence ----

using Vec = std::vector<double>;

Vec matvec(const Vec& w, int rows, int cols, const Vec& x) {  // w is [rows, cols] row-major
  Vec y(rows, 0.0);
  for (int r = 0; r < rows; ++r)
    for (int k = 0; k < cols; ++k) y[r] += w[r * cols + k] * x[k];
  return y;
}

Vec rms_norm(const Vec& x, const Vec& weight, double eps) {
  double sum = 0;
  for (double v : x) sum += v * v;
  const double inv = 1.0 / std::sqrt(sum / x.size() + eps);
  Vec y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * inv * weight[i];
  return y;
}

// Rotary embedding on one head vector at position `pos`: pairs (i, i + d/2) rotate by pos * theta^(-2i/d).
void rope(double* v, int d, int pos, double theta) {
  for (int i = 0; i < d / 2; ++i) {
    const double angle = pos * std::pow(theta, -2.0 * i / d);
    const double a = v[i], b = v[i + d / 2];
    v[i] = a * std::cos(angle) - b * std::sin(angle);
    v[i + d / 2] = b * std::cos(angle) + a * std::sin(angle);
  }
}

// log p(ids[t] | ids[<t]) for t = 1..n-1.
std::vector<double> oracle_logprobs(const OracleConfig& c, Weights& w, const std::vector<int>& ids) {
  const int n = static_cast<int>(ids.size()), D = c.head_dim;
  std::vector<Vec> x(n);
  for (int t = 0; t < n; ++t)
    x[t] = Vec(w["model.embed_tokens.weight"].begin() + ids[t] * c.hidden,
               w["model.embed_tokens.weight"].begin() + (ids[t] + 1) * c.hidden);
  for (int l = 0; l < c.layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    std::vector<Vec> q(n), k(n), v(n);
    for (int t = 0; t < n; ++t) {
      Vec h = rms_norm(x[t], w[p + "input_layernorm.weight"], c.eps);
      q[t] = matvec(w[p + "self_attn.q_proj.weight"], c.heads * D, c.hidden, h);
      k[t] = matvec(w[p + "self_attn.k_proj.weight"], c.kv_heads * D, c.hidden, h);
      v[t] = matvec(w[p + "self_attn.v_proj.weight"], c.kv_heads * D, c.hidden, h);
      if (c.bias) {
        for (int i = 0; i < c.heads * D; ++i) q[t][i] += w[p + "self_attn.q_proj.bias"][i];
        for (int i = 0; i < c.kv_heads * D; ++i) k[t][i] += w[p + "self_attn.k_proj.bias"][i];
        for (int i = 0; i < c.kv_heads * D; ++i) v[t][i] += w[p + "self_attn.v_proj.bias"][i];
      }
      // Qwen3 normalises each head (q_norm / k_norm) before the rotary embedding.
      auto norm_and_rotate = [&](Vec& vec, int heads, const std::string& norm) {
        for (int head = 0; head < heads; ++head) {
          if (c.qk_norm) {
            Vec part(vec.begin() + head * D, vec.begin() + (head + 1) * D);
            part = rms_norm(part, w[p + norm], c.eps);
            std::copy(part.begin(), part.end(), vec.begin() + head * D);
          }
          rope(&vec[head * D], D, t, c.theta);
        }
      };
      norm_and_rotate(q[t], c.heads, "self_attn.q_norm.weight");
      norm_and_rotate(k[t], c.kv_heads, "self_attn.k_norm.weight");
    }
    const int group = c.heads / c.kv_heads;
    for (int t = 0; t < n; ++t) {
      Vec attn(c.heads * D, 0.0);
      for (int head = 0; head < c.heads; ++head) {
        const int kvh = head / group;
        std::vector<double> scores(t + 1);
        double max_score = -1e300;
        for (int s = 0; s <= t; ++s) {
          double dot = 0;
          for (int i = 0; i < D; ++i) dot += q[t][head * D + i] * k[s][kvh * D + i];
          scores[s] = dot / std::sqrt(static_cast<double>(D));
          max_score = std::max(max_score, scores[s]);
        }
        double total = 0;
        for (auto& sc : scores) total += (sc = std::exp(sc - max_score));
        for (int s = 0; s <= t; ++s)
          for (int i = 0; i < D; ++i) attn[head * D + i] += scores[s] / total * v[s][kvh * D + i];
      }
      Vec o = matvec(w[p + "self_attn.o_proj.weight"], c.hidden, c.heads * D, attn);
      for (int i = 0; i < c.hidden; ++i) x[t][i] += o[i];
    }
    for (int t = 0; t < n; ++t) {
      Vec h = rms_norm(x[t], w[p + "post_attention_layernorm.weight"], c.eps);
      Vec gate = matvec(w[p + "mlp.gate_proj.weight"], c.inter, c.hidden, h);
      Vec up = matvec(w[p + "mlp.up_proj.weight"], c.inter, c.hidden, h);
      for (int i = 0; i < c.inter; ++i) gate[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
      Vec down = matvec(w[p + "mlp.down_proj.weight"], c.hidden, c.inter, gate);
      for (int i = 0; i < c.hidden; ++i) x[t][i] += down[i];
    }
  }
  const Vec& head = c.tied ? w["model.embed_tokens.weight"] : w["lm_head.weight"];
  std::vector<double> out;
  for (int t = 0; t + 1 < n; ++t) {
    Vec h = rms_norm(x[t], w["model.norm.weight"], c.eps);
    Vec logits = matvec(head, c.vocab, c.hidden, h);
    double max_logit = *std::max_element(logits.begin(), logits.end()), total = 0;
    for (double z : logits) total += std::exp(z - max_logit);
    out.push_back(logits[ids[t + 1]] - max_logit - std::log(total));
  }
  return out;
}

void check_against_oracle(const OracleConfig& c) {
  test::TempDir tmp("oracle");
  const std::string dir = tmp / "model";
  Weights weights = write_checkpoint(c, dir, 1234);
  const std::vector<int> ids = {3, 17, 42, 5, 88, 1, 60, 60, 23, 9, 71, 2, 50};
  const std::vector<double> expected = oracle_logprobs(c, weights, ids);

  auto model = posttrain::load_model(dir);
  std::vector<int64_t> ids64(ids.begin(), ids.end());
  const std::vector<double> got = posttrain::sequence_logprobs(*model, ids64);
  REQUIRE(got.size() == expected.size());
  for (size_t t = 0; t < got.size(); ++t) {
    INFO("position " << t + 1 << ": ours " << got[t] << " oracle " << expected[t]);
    CHECK(std::abs(got[t] - expected[t]) < 1e-4);
  }
  // The values are not trivially uniform: a wrong model could not pass by accident.
  CHECK(std::abs(expected[0] - expected[1]) > 1e-3);

  // Same numbers through the CLI contract.
  std::string id_list;
  for (size_t i = 0; i < ids.size(); ++i) id_list += (i ? "," : "") + std::to_string(ids[i]);
  auto result = test::run(test::posttrain_bin() + " logprobs --model " + dir + " --ids " + id_list);
  REQUIRE(result.exit_code == 0);
  auto json = nlohmann::json::parse(result.output);
  REQUIRE(json["logprobs"].size() == expected.size());
  for (size_t t = 0; t < expected.size(); ++t) CHECK(std::abs(json["logprobs"][t].get<double>() - expected[t]) < 1e-4);
}

}  // namespace

TEST_CASE("Qwen2 forward (q/k/v bias, tied embeddings, F32) matches the scalar oracle", "[models][oracle]") {
  check_against_oracle({"qwen2", 97, 32, 48, 2, 4, 2, 8, true, false, true, 10000.0, 1e-6, "F32"});
}

TEST_CASE("Qwen3 forward (q/k norm, head_dim != hidden/heads, untied, BF16) matches the scalar oracle",
          "[models][oracle]") {
  check_against_oracle({"qwen3", 101, 32, 40, 2, 4, 2, 12, false, true, false, 1000000.0, 1e-6, "BF16"});
}
