// method: kto. Kahneman-Tversky optimisation on unpaired feedback: each example is a prompt and one
// response labelled desirable or undesirable (or a preference pair, split into one of each). With
// r = log pi(y|x) - log ref(y|x) summed over response tokens, and z = max(0, mean over the step's
// batch of r on MISMATCHED pairs (prompt i, response of example i+1)), detached:
//   L = sum_i [ lambda_d (1 - sigmoid(beta (r_i - z))) if desirable, else lambda_u (1 - sigmoid(beta (z - r_i))) ]
//       / (examples in the step)
// z is estimated over the whole global batch (every rank, every micro-batch) before any loss, so the
// update does not depend on how the step is split.
#include <torch/torch.h>

#include <algorithm>

#include "core/yaml_reader.h"
#include "models/checkpoint.h"
#include "models/logprobs.h"
#include "models/lora.h"
#include "trainers/loop.h"
#include "trainers/preference_losses.h"

namespace posttrain {

namespace {

// Response log-prob sums [N] of `examples` (rows), under `model`.
torch::Tensor response_sums(QwenForCausalLMImpl& model, const TokenizedDataset& data,
                            const std::vector<int64_t>& examples, int32_t pad_id, bool bf16) {
  const LMBatch batch = make_lm_batch(data, examples, pad_id);
  return batch_token_logprobs(model, batch, bf16).view({batch.input_ids.size(0), -1}).sum(1);  // [N]
}

// Prompt of example a + response of example b, as one example (for the KL reference point).
void append_mismatched(const TokenizedDataset& data, int64_t a, int64_t b, TokenizedDataset& out) {
  auto prompt_end = [&](int64_t e) {
    int64_t i = data.offsets[e];
    while (i < data.offsets[e + 1] && data.loss_mask[static_cast<size_t>(i)] == 0) ++i;
    return i;
  };
  const int64_t pa = prompt_end(a), pb = prompt_end(b);
  out.tokens.insert(out.tokens.end(), data.tokens.begin() + data.offsets[a], data.tokens.begin() + pa);
  out.loss_mask.insert(out.loss_mask.end(), pa - data.offsets[a], 0);
  out.tokens.insert(out.tokens.end(), data.tokens.begin() + pb, data.tokens.begin() + data.offsets[b + 1]);
  out.loss_mask.insert(out.loss_mask.end(), data.offsets[b + 1] - pb, 1);
  out.offsets.push_back(static_cast<int64_t>(out.tokens.size()));
}

}  // namespace

void train_kto(RunContext& ctx) {
  const TrainSpec& spec = ctx.recipe.train;
  YamlSection options(ctx.recipe.method_options, "kto", ctx.recipe.file, ctx.recipe.overrides);
  const double beta = options.get<double>("beta", 0.1);
  const double lambda_d = options.get<double>("desirable_weight", 1.0);
  const double lambda_u = options.get<double>("undesirable_weight", 1.0);
  if (beta <= 0) options.fail_at("beta", "must be positive");
  if (lambda_d < 0) options.fail_at("desirable_weight", "must be >= 0");
  if (lambda_u < 0) options.fail_at("undesirable_weight", "must be >= 0");
  options.finish();
  if (ctx.only_check_options) return;

  LMTraining t = setup_lm_training(ctx, "unpaired");
  QwenForCausalLM reference = reference_model(ctx, t);
  const int64_t per_rank = spec.batch_size / ctx.world_size;
  for (int64_t step = t.start_step; step < spec.steps; ++step) {
    StepStats stats;
    const auto global = step_batch(ctx, t.data.size(), step);
    const std::vector<int64_t> mine = rank_share(ctx, global);

    // 1. The reference point z: r on mismatched pairs, example g's prompt with example g+1's response
    // (positions in the global batch, wrapping), summed over every rank.
    double kl_sum = 0;
    {
      torch::NoGradGuard no_grad;
      TokenizedDataset mismatched;
      for (int64_t i = 0; i < per_rank; ++i) {
        const int64_t g = rank_offset(ctx) + i;
        append_mismatched(t.data, global[static_cast<size_t>(g)],
                          global[static_cast<size_t>((g + 1) % spec.batch_size)], mismatched);
      }
      std::vector<int64_t> rows(static_cast<size_t>(per_rank));
      for (int64_t i = 0; i < per_rank; ++i) rows[static_cast<size_t>(i)] = i;
      for (const auto& micro : split_micro_batches(rows, spec.micro_batch_size)) {
        auto policy = response_sums(*t.model, mismatched, micro, t.tokenizer.pad_id(), t.bf16_autocast);
        AdaptersDisabled as_base(*reference);
        auto r = policy - response_sums(*reference, mismatched, micro, t.tokenizer.pad_id(), t.bf16_autocast);
        kl_sum += r.sum().item<double>();
      }
    }
    const double z = std::max(0.0, ctx.dist->all_reduce_sum(kl_sum) / static_cast<double>(spec.batch_size));

    // 2. Losses.
    double reward_sums[4] = {0, 0, 0, 0};  // desirable sum, count, undesirable sum, count
    for (const auto& micro : split_micro_batches(mine, spec.micro_batch_size)) {
      auto policy = response_sums(*t.model, t.data, micro, t.tokenizer.pad_id(), t.bf16_autocast);  // [N]
      torch::Tensor ref;
      {
        torch::NoGradGuard no_grad;
        AdaptersDisabled as_base(*reference);
        ref = response_sums(*reference, t.data, micro, t.tokenizer.pad_id(), t.bf16_autocast);
      }
      std::vector<float> labels;
      for (int64_t e : micro) labels.push_back(static_cast<float>(t.data.labels[static_cast<size_t>(e)]));
      auto desirable = torch::tensor(labels).to(policy.device());
      auto loss =
          kto_loss(policy, ref, desirable, z, beta, lambda_d, lambda_u).sum() / static_cast<double>(spec.batch_size);
      loss.backward();
      stats.loss += loss.item<double>();
      stats.head_rows += count_loss_tokens(t.data, micro);
      for (int64_t e : micro) {
        stats.tokens += t.data.length(e);
        stats.sequence_length = std::max(stats.sequence_length, t.data.length(e));
      }
      torch::NoGradGuard no_grad;
      auto rewards = beta * (policy - ref);  // implicit rewards
      reward_sums[0] += (rewards * desirable).sum().item<double>();
      reward_sums[1] += desirable.sum().item<double>();
      reward_sums[2] += (rewards * (1 - desirable)).sum().item<double>();
      reward_sums[3] += (1 - desirable).sum().item<double>();
    }
    for (double& v : reward_sums) v = ctx.dist->all_reduce_sum(v);
    stats.rank0_values["rewards/desirable"] = reward_sums[0] / std::max(1.0, reward_sums[1]);
    stats.rank0_values["rewards/undesirable"] = reward_sums[2] / std::max(1.0, reward_sums[3]);
    stats.rank0_values["rewards/margins"] =
        stats.rank0_values["rewards/desirable"] - stats.rank0_values["rewards/undesirable"];
    stats.rank0_values["kl"] = z;
    finish_step(ctx, t, step, stats);
  }
  finish_training(ctx, t);
}

namespace {
const bool registered =
    (register_trainer("kto", train_kto, "KTO: unpaired desirable / undesirable feedback with a KL reference point",
                      "unpaired"),
     true);
}

}  // namespace posttrain
