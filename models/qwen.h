// The Qwen2 / Qwen2.5 / Qwen3 decoder as libtorch modules whose registered names mirror HF
// transformers exactly, so named_parameters() keys equal the safetensors keys.
#pragma once

#include <torch/nn/module.h>
#include <torch/nn/modules/container/modulelist.h>
#include <torch/nn/modules/embedding.h>
#include <torch/nn/modules/linear.h>

#include <vector>

#include "core/lora_spec.h"
#include "models/config.h"

namespace posttrain {

// Keys and values of every layer for incremental decoding, preallocated to `capacity` positions.
struct KVCache {
  std::vector<torch::Tensor> keys;  // per layer [B, kv_heads, capacity, head_dim]
  std::vector<torch::Tensor> values;  // per layer [B, kv_heads, capacity, head_dim]
  int64_t length = 0;  // positions filled so far
  int64_t capacity = 0;
};

class QwenRMSNormImpl : public torch::nn::Module {
 public:
  QwenRMSNormImpl(int64_t dim, double eps);
  torch::Tensor forward(const torch::Tensor& x);  // [..., dim] -> [..., dim]

  torch::Tensor weight;  // [dim]
  double eps;
};
TORCH_MODULE(QwenRMSNorm);

// A projection of the decoder: y = x W^T (+ b), as nn.Linear, plus an optional LoRA update
// (models/lora.h adds it) registered as PEFT names it, so state_dict keys read
// "...q_proj.weight" for the base and "...q_proj.lora_A.weight" / "...q_proj.lora_B.weight".
class QwenLinearImpl : public torch::nn::Module {
 public:
  QwenLinearImpl(int64_t in_features, int64_t out_features, bool with_bias);
  // x [..., in] -> [..., out]: the base projection, plus lora_scale * B A dropout(x) when an
  // adapter is attached and enabled.
  torch::Tensor forward(const torch::Tensor& x);

  torch::Tensor weight;  // [out, in]
  torch::Tensor bias;  // [out], undefined without bias
  torch::nn::Linear lora_A{nullptr};  // weight [rank, in]; null without an adapter
  torch::nn::Linear lora_B{nullptr};  // weight [out, rank]
  double lora_scale = 0;  // alpha / rank (alpha / sqrt(rank) for rsLoRA)
  double lora_dropout = 0;  // on the adapter's input, in training mode only
  bool lora_enabled = true;  // false while AdaptersDisabled holds (the reference model)
};
TORCH_MODULE(QwenLinear);

class QwenAttentionImpl : public torch::nn::Module {
 public:
  QwenAttentionImpl(const QwenConfig& config, int64_t layer_index);
  // x [B, T, hidden]; cos/sin [B, 1, T, head_dim]; mask [B, 1, T, S] bool (true = may attend),
  // S = cached + T. Writes this step's keys/values into the cache when one is given.
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& mask, KVCache* cache);

  QwenLinear q_proj{nullptr}, k_proj{nullptr}, v_proj{nullptr}, o_proj{nullptr};
  QwenRMSNorm q_norm{nullptr}, k_norm{nullptr};  // Qwen3 only: RMSNorm over head_dim, per head
  int64_t num_heads, num_kv_heads, head_dim, layer_index;
};
TORCH_MODULE(QwenAttention);

class QwenMLPImpl : public torch::nn::Module {
 public:
  explicit QwenMLPImpl(const QwenConfig& config);
  torch::Tensor forward(const torch::Tensor& x);  // down(silu(gate(x)) * up(x))

  QwenLinear gate_proj{nullptr}, up_proj{nullptr}, down_proj{nullptr};
};
TORCH_MODULE(QwenMLP);

class QwenDecoderLayerImpl : public torch::nn::Module {
 public:
  QwenDecoderLayerImpl(const QwenConfig& config, int64_t layer_index);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& cos, const torch::Tensor& sin,
                        const torch::Tensor& mask, KVCache* cache);

  QwenAttention self_attn{nullptr};
  QwenMLP mlp{nullptr};
  QwenRMSNorm input_layernorm{nullptr}, post_attention_layernorm{nullptr};
};
TORCH_MODULE(QwenDecoderLayer);

// "model." in HF names: embeddings, the layer stack and the final norm.
class QwenModelImpl : public torch::nn::Module {
 public:
  explicit QwenModelImpl(const QwenConfig& config);
  // input_ids, position_ids [B, T] int64; mask [B, 1, T, S] bool -> hidden states [B, T, hidden]
  torch::Tensor forward(const torch::Tensor& input_ids, const torch::Tensor& position_ids, const torch::Tensor& mask,
                        KVCache* cache);

  torch::nn::Embedding embed_tokens{nullptr};
  torch::nn::ModuleList layers{nullptr};
  QwenRMSNorm norm{nullptr};
  torch::Tensor inv_freq;  // [head_dim / 2] rotary frequencies; a buffer HF does not save
  QwenConfig config;
  // Activation checkpointing: keep only each layer's input during training and recompute the layer
  // in backward (about one extra forward of compute for activations of one layer at a time).
  bool checkpoint_layers = false;
};
TORCH_MODULE(QwenModel);

// The causal LM, and (config.num_labels > 0) the sequence classifier / reward model: one body, with
// `lm_head` or `score` on top, named as HF names them.
class QwenForCausalLMImpl : public torch::nn::Module {
 public:
  explicit QwenForCausalLMImpl(const QwenConfig& config);

  // Final hidden states [B, T, hidden]. mask may be undefined: plain causal attention.
  torch::Tensor hidden_states(const torch::Tensor& input_ids, const torch::Tensor& position_ids,
                              const torch::Tensor& mask = {}, KVCache* cache = nullptr);
  // The LM head's weight [vocab, hidden]: embed_tokens.weight when tied. Not for a classifier.
  torch::Tensor lm_head_weight() const;
  bool is_classifier() const { return config.num_labels > 0; }
  torch::Device device() const { return model->embed_tokens->weight.device(); }

  KVCache make_cache(int64_t batch, int64_t capacity) const;

  QwenModel model{nullptr};
  torch::nn::Linear lm_head{nullptr};  // registered only for an untied causal LM
  torch::nn::Linear score{nullptr};  // [num_labels, hidden], registered only for a classifier
  QwenConfig config;
  // LoRA adapters on the projections (models/lora.h): their settings (rank 0: none) and the base
  // model folder they sit on, both written into the adapter's adapter_config.json.
  LoraSpec lora;
  bool lora_rslora = false;
  std::string lora_base;
};
TORCH_MODULE(QwenForCausalLM);

// Mask [B, 1, T, S] (true = attend) for T new queries after `past` cached positions: causal, and
// keys where key_padding [B, S] is false are hidden. key_padding may be undefined (no padding).
torch::Tensor causal_mask(const torch::Tensor& key_padding, int64_t batch, int64_t new_tokens, int64_t past,
                          const torch::Device& device);

// Classifier scores [B, num_labels] read at the last real token of each row, as HF's
// Qwen*ForSequenceClassification pools. key_padding [B, T]: true on real tokens.
torch::Tensor last_token_scores(QwenForCausalLMImpl& model, const torch::Tensor& input_ids,
                                const torch::Tensor& key_padding);

// HF's initialisation: normal(0, initializer_range) for linear and embedding weights, zero biases,
// unit norm weights; deterministic for a given seed (drawn on the CPU in registration order).
void init_weights(QwenForCausalLMImpl& model, uint64_t seed);

}  // namespace posttrain
