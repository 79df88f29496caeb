#include "models/qwen.h"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>
#include <torch/version.h>

#include <cmath>
#include <cstdlib>
#include <limits>

#include "models/matvec.h"

namespace posttrain {

namespace {

#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 1)
#define POSTTRAIN_FUSED_ATTENTION 1
// POSTTRAIN_ATTENTION=naive keeps the explicit softmax(QK^T)V path on CUDA too (for comparisons).
bool naive_attention() {
  static const bool naive = [] {
    const char* env = std::getenv("POSTTRAIN_ATTENTION");
    return env != nullptr && std::string(env) == "naive";
  }();
  return naive;
}
#endif

// HF's rotate_half: [x1, x2] -> [-x2, x1] over the last dim.
torch::Tensor rotate_half(const torch::Tensor& x) {
  auto halves = x.chunk(2, -1);
  return torch::cat({-halves[1], halves[0]}, -1);
}

torch::nn::Linear make_linear(int64_t in, int64_t out, bool bias) {
  return torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(bias));
}

}  // namespace

QwenLinearImpl::QwenLinearImpl(int64_t in, int64_t out, bool with_bias) {
  // Values come from the checkpoint or init_weights; this only sizes the tensors.
  weight = register_parameter("weight", torch::empty({out, in}));
  if (with_bias) bias = register_parameter("bias", torch::zeros({out}));
}

torch::Tensor QwenLinearImpl::forward(const torch::Tensor& x) {
  auto y = linear_rows(x, weight, bias);  // [..., out]
  if (!lora_A || !lora_enabled) return y;
  // PEFT's order: dropout on the input, down to rank with A, up with B, then scale.
  auto h = is_training() && lora_dropout > 0 ? torch::dropout(x, lora_dropout, /*train=*/true) : x;
  return y + lora_B(lora_A(h)) * lora_scale;
}

QwenRMSNormImpl::QwenRMSNormImpl(int64_t dim, double eps_) : eps(eps_) {
  weight = register_parameter("weight", torch::ones({dim}));
}

torch::Tensor QwenRMSNormImpl::forward(const torch::Tensor& x) {
  // Like HF: normalise in float32, cast back, then scale.
  auto x32 = x.to(torch::kFloat32);
  auto normed = x32 * torch::rsqrt(x32.pow(2).mean(-1, /*keepdim=*/true) + eps);
  return weight * normed.to(x.scalar_type());
}

QwenAttentionImpl::QwenAttentionImpl(const QwenConfig& c, int64_t layer)
    : num_heads(c.num_attention_heads), num_kv_heads(c.num_key_value_heads), head_dim(c.head_dim), layer_index(layer) {
  q_proj = register_module("q_proj", QwenLinear(c.hidden_size, num_heads * head_dim, c.attention_bias));
  k_proj = register_module("k_proj", QwenLinear(c.hidden_size, num_kv_heads * head_dim, c.attention_bias));
  v_proj = register_module("v_proj", QwenLinear(c.hidden_size, num_kv_heads * head_dim, c.attention_bias));
  o_proj = register_module("o_proj", QwenLinear(num_heads * head_dim, c.hidden_size, false));
  if (c.qk_norm) {
    q_norm = register_module("q_norm", QwenRMSNorm(head_dim, c.rms_norm_eps));
    k_norm = register_module("k_norm", QwenRMSNorm(head_dim, c.rms_norm_eps));
  }
}

torch::Tensor QwenAttentionImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                         const torch::Tensor& mask, KVCache* cache) {
  const int64_t B = x.size(0), T = x.size(1);
  auto q = q_proj(x).view({B, T, num_heads, head_dim});  // [B, T, H, D]
  auto k = k_proj(x).view({B, T, num_kv_heads, head_dim});  // [B, T, KV, D]
  auto v = v_proj(x).view({B, T, num_kv_heads, head_dim}).transpose(1, 2);  // [B, KV, T, D]
  if (q_norm) {
    q = q_norm(q);
    k = k_norm(k);
  }
  q = q.transpose(1, 2);  // [B, H, T, D]
  k = k.transpose(1, 2);  // [B, KV, T, D]
  q = q * cos + rotate_half(q) * sin;
  k = k * cos + rotate_half(k) * sin;

  if (cache != nullptr) {
    const int64_t start = cache->length;
    auto& k_all = cache->keys[layer_index];
    auto& v_all = cache->values[layer_index];
    k_all.narrow(2, start, T).copy_(k);
    v_all.narrow(2, start, T).copy_(v);
    k = k_all.narrow(2, 0, start + T);
    v = v_all.narrow(2, 0, start + T);
  }
  const int64_t S = k.size(2);

#ifdef POSTTRAIN_FUSED_ATTENTION
  // On CUDA, libtorch >= 2.1's fused attention (memory-efficient / flash kernels): no [T, S] score
  // tensor in memory. The mask is additive with the lowest finite value, not boolean: a boolean mask
  // turns rows with no visible key (left padding) into NaN, and 0 x NaN would leak into real rows
  // through the next layer's values.
  // Decode steps (T = 1) keep the explicit path: measured on an H200, fused attention there (with
  // the cache's keys expanded to every head each step) cut generation from 383 to 72 tokens/s.
  if (q.is_cuda() && T > 1 && !naive_attention()) {
    // One dtype for the kernel: rotary embeddings may have promoted q and k to float32 while v
    // kept the weights' (or autocast's) dtype.
    const int64_t groups = num_heads / num_kv_heads;
    auto q_in = q.to(v.scalar_type());  // [B, H, T, D]
    auto k_heads =
        (groups > 1 ? k.repeat_interleave(groups, 1) : k).to(v.scalar_type());  // [B, H, S, D], HF's repeat_kv order
    auto v_heads = groups > 1 ? v.repeat_interleave(groups, 1) : v;  // [B, H, S, D]
    // The most negative value of the kernel's dtype (float's would overflow bfloat16 / half).
    const double lowest = q_in.scalar_type() == torch::kBFloat16 ? -3.3895313892515355e38
                          : q_in.scalar_type() == torch::kHalf   ? -65504.0
                                                                 : std::numeric_limits<float>::lowest();
    c10::optional<at::Tensor> bias;
    if (mask.defined())
      bias = torch::zeros(mask.sizes(), q_in.options()).masked_fill(mask.logical_not(), lowest);  // [B, 1, T, S]
    auto out = at::scaled_dot_product_attention(q_in, k_heads, v_heads, bias, 0.0,
                                                /*is_causal=*/!mask.defined());  // [B, H, T, D]
    return o_proj(out.transpose(1, 2).reshape({B, T, num_heads * head_dim}));  // [B, T, H*D]
  }
#endif

  // Grouped-query attention without copying k/v: query head h reads kv head h / groups (HF's
  // repeat_kv order), so fold the `groups` query heads of each kv head into the query-length dim.
  const int64_t groups = num_heads / num_kv_heads;
  auto qg = q.reshape({B, num_kv_heads, groups * T, head_dim});
  auto scores = torch::matmul(qg, k.transpose(-1, -2)) * (1.0 / std::sqrt(static_cast<double>(head_dim)));
  scores = scores.view({B, num_kv_heads, groups, T, S}).to(torch::kFloat32);
  // A very negative number rather than -inf: rows with no visible key (left-padding queries) stay
  // finite instead of turning into NaN.
  scores = scores.masked_fill(mask.unsqueeze(1).logical_not(), std::numeric_limits<float>::lowest());
  auto probs = torch::softmax(scores, -1).to(q.scalar_type());  // [B, KV, G, T, S]
  auto out = torch::matmul(probs.view({B, num_kv_heads, groups * T, S}), v);  // [B, KV, G*T, D]
  out = out.view({B, num_heads, T, head_dim}).transpose(1, 2).reshape({B, T, num_heads * head_dim});
  return o_proj(out);
}

QwenMLPImpl::QwenMLPImpl(const QwenConfig& c) {
  gate_proj = register_module("gate_proj", QwenLinear(c.hidden_size, c.intermediate_size, false));
  up_proj = register_module("up_proj", QwenLinear(c.hidden_size, c.intermediate_size, false));
  down_proj = register_module("down_proj", QwenLinear(c.intermediate_size, c.hidden_size, false));
}

torch::Tensor QwenMLPImpl::forward(const torch::Tensor& x) { return down_proj(torch::silu(gate_proj(x)) * up_proj(x)); }

QwenDecoderLayerImpl::QwenDecoderLayerImpl(const QwenConfig& c, int64_t layer) {
  self_attn = register_module("self_attn", QwenAttention(c, layer));
  mlp = register_module("mlp", QwenMLP(c));
  input_layernorm = register_module("input_layernorm", QwenRMSNorm(c.hidden_size, c.rms_norm_eps));
  post_attention_layernorm = register_module("post_attention_layernorm", QwenRMSNorm(c.hidden_size, c.rms_norm_eps));
}

torch::Tensor QwenDecoderLayerImpl::forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                                            const torch::Tensor& mask, KVCache* cache) {
  auto h = x + self_attn(input_layernorm(x), cos, sin, mask, cache);
  return h + mlp(post_attention_layernorm(h));
}

namespace {

// One decoder layer as a single autograd node that saves only its input. backward() recomputes the
// layer with autograd on and backpropagates through the recomputation (PyTorch's reentrant
// checkpoint): parameter gradients accumulate as usual, the input's gradient is returned.
struct CheckpointedLayer : public torch::autograd::Function<CheckpointedLayer> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& cos,
                               const torch::Tensor& sin, const torch::Tensor& mask, int64_t layer_address) {
    ctx->save_for_backward({x, cos, sin, mask});
    ctx->saved_data["layer"] = layer_address;
    torch::NoGradGuard no_grad;
    return reinterpret_cast<QwenDecoderLayerImpl*>(layer_address)->forward(x, cos, sin, mask, nullptr);
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    auto* layer = reinterpret_cast<QwenDecoderLayerImpl*>(ctx->saved_data["layer"].toInt());
    torch::AutoGradMode enable(true);
    auto x = saved[0].detach().requires_grad_(true);
    auto out = layer->forward(x, saved[1], saved[2], saved[3], nullptr);
    torch::autograd::backward({out}, {grads[0]});
    return {x.grad(), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

QwenModelImpl::QwenModelImpl(const QwenConfig& c) : config(c) {
  embed_tokens = register_module("embed_tokens", torch::nn::Embedding(c.vocab_size, c.hidden_size));
  layers = register_module("layers", torch::nn::ModuleList());
  for (int64_t i = 0; i < c.num_hidden_layers; ++i) layers->push_back(QwenDecoderLayer(c, i));
  norm = register_module("norm", QwenRMSNorm(c.hidden_size, c.rms_norm_eps));
  auto exponents = torch::arange(0, c.head_dim, 2, torch::kFloat64) / static_cast<double>(c.head_dim);
  inv_freq = register_buffer("inv_freq", torch::pow(c.rope_theta, exponents).reciprocal().to(torch::kFloat32));
}

torch::Tensor QwenModelImpl::forward(const torch::Tensor& input_ids, const torch::Tensor& position_ids,
                                     const torch::Tensor& mask, KVCache* cache) {
  auto x = embed_tokens(input_ids);  // [B, T, hidden]
  // Rotary angles in float32 like HF, cast to the activation dtype at the end.
  auto freqs = position_ids.to(torch::kFloat32).unsqueeze(-1) * inv_freq.to(position_ids.device());  // [B, T, D/2]
  auto angles = torch::cat({freqs, freqs}, -1).unsqueeze(1);  // [B, 1, T, D]
  auto cos = angles.cos().to(x.scalar_type());
  auto sin = angles.sin().to(x.scalar_type());
  const bool recompute = checkpoint_layers && cache == nullptr && torch::GradMode::is_enabled() && is_training();
  // A frozen embedding (LoRA) gives an input without grad; the checkpointed layer would then not
  // be recorded by autograd at all and its adapters would get no gradient (PEFT's
  // enable_input_require_grads does the same).
  if (recompute && !x.requires_grad()) x = x.detach().requires_grad_(true);
  for (const auto& layer : *layers) {
    auto* decoder = layer->as<QwenDecoderLayer>();
    x = recompute ? CheckpointedLayer::apply(x, cos, sin, mask, reinterpret_cast<int64_t>(decoder))
                  : decoder->forward(x, cos, sin, mask, cache);
  }
  if (cache != nullptr) cache->length += input_ids.size(1);
  return norm(x);
}

QwenForCausalLMImpl::QwenForCausalLMImpl(const QwenConfig& c) : config(c) {
  model = register_module("model", QwenModel(c));
  if (c.num_labels > 0)
    score = register_module("score", make_linear(c.hidden_size, c.num_labels, false));
  else if (!c.tie_word_embeddings)
    lm_head = register_module("lm_head", make_linear(c.hidden_size, c.vocab_size, false));
}

torch::Tensor QwenForCausalLMImpl::hidden_states(const torch::Tensor& input_ids, const torch::Tensor& position_ids,
                                                 const torch::Tensor& mask, KVCache* cache) {
  const int64_t past = cache != nullptr ? cache->length : 0;
  auto full_mask =
      mask.defined() ? mask : causal_mask({}, input_ids.size(0), input_ids.size(1), past, input_ids.device());
  return model->forward(input_ids, position_ids, full_mask, cache);
}

torch::Tensor QwenForCausalLMImpl::lm_head_weight() const {
  TORCH_CHECK(!is_classifier(), "a sequence classifier has no LM head");
  return lm_head ? lm_head->weight : model->embed_tokens->weight;
}

KVCache QwenForCausalLMImpl::make_cache(int64_t batch, int64_t capacity) const {
  KVCache cache;
  cache.capacity = capacity;
  auto weight = model->embed_tokens->weight;
  auto options = torch::TensorOptions().dtype(weight.scalar_type()).device(weight.device());
  for (int64_t i = 0; i < config.num_hidden_layers; ++i) {
    cache.keys.push_back(torch::zeros({batch, config.num_key_value_heads, capacity, config.head_dim}, options));
    cache.values.push_back(torch::zeros({batch, config.num_key_value_heads, capacity, config.head_dim}, options));
  }
  return cache;
}

torch::Tensor causal_mask(const torch::Tensor& key_padding, int64_t batch, int64_t new_tokens, int64_t past,
                          const torch::Device& device) {
  const int64_t S = past + new_tokens;
  auto query_pos = torch::arange(past, S, torch::TensorOptions().dtype(torch::kInt64).device(device)).unsqueeze(1);
  auto key_pos = torch::arange(0, S, torch::TensorOptions().dtype(torch::kInt64).device(device)).unsqueeze(0);
  auto mask = (key_pos <= query_pos).view({1, 1, new_tokens, S}).expand({batch, 1, new_tokens, S});
  if (key_padding.defined()) mask = mask.logical_and(key_padding.to(torch::kBool).view({batch, 1, 1, S}));
  return mask;
}

torch::Tensor last_token_scores(QwenForCausalLMImpl& model, const torch::Tensor& input_ids,
                                const torch::Tensor& key_padding) {
  TORCH_CHECK(model.is_classifier(), "last_token_scores needs a model with a score head");
  const auto device = model.device();
  const int64_t B = input_ids.size(0), T = input_ids.size(1);
  auto real = key_padding.to(device, torch::kBool);  // [B, T]
  auto positions = (real.to(torch::kInt64).cumsum(1) - 1).clamp_min(0);  // [B, T], 0-based per row
  auto hidden = model.hidden_states(input_ids.to(device), positions, causal_mask(real, B, T, 0, device));  // [B, T, H]
  // Index of the last real token: the largest t with real[b, t] (right or left padding alike).
  auto index = (torch::arange(T, torch::TensorOptions().dtype(torch::kInt64).device(device)).unsqueeze(0) *
                real.to(torch::kInt64))
                   .argmax(1);  // [B]
  auto pooled = hidden.gather(1, index.view({B, 1, 1}).expand({B, 1, hidden.size(2)})).squeeze(1);  // [B, H]
  return model.score->forward(pooled.to(model.score->weight.scalar_type()));  // [B, num_labels]
}

void init_weights(QwenForCausalLMImpl& model, uint64_t seed) {
  torch::NoGradGuard no_grad;
  auto generator = at::detail::createCPUGenerator(seed);
  const double std_dev = model.config.initializer_range;
  for (auto& item : model.named_parameters()) {
    const std::string& name = item.key();
    auto& param = item.value();
    auto ends_with = [&](const std::string& suffix) {
      return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    };
    torch::Tensor values;
    if (ends_with("norm.weight")) {
      values = torch::ones(param.sizes(), torch::kFloat32);
    } else if (ends_with(".bias")) {
      values = torch::zeros(param.sizes(), torch::kFloat32);
    } else {
      values = at::normal(0.0, std_dev, param.sizes(), generator, torch::TensorOptions().dtype(torch::kFloat32));
    }
    param.copy_(values);
  }
}

}  // namespace posttrain
