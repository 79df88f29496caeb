#include "redteam/attack.h"

#include <map>

#include "core/error.h"

namespace posttrain {

namespace {

struct Entry {
  AttackFactory factory;
  ChoiceAttackFactory choice_factory;
  AttackInfo info;
};

std::map<std::string, Entry>& registry() {
  static std::map<std::string, Entry> entries;
  return entries;
}

}  // namespace

void register_attack(const std::string& name, AttackFactory factory, const AttackInfo& info) {
  registry()[name] = {std::move(factory), nullptr, info};
}

void register_choice_attack(const std::string& name, ChoiceAttackFactory factory, AttackInfo info) {
  info.on_choices = true;
  registry()[name] = {nullptr, std::move(factory), info};
}

std::vector<std::string> attack_names() {
  std::vector<std::string> names;
  for (const auto& [name, entry] : registry()) names.push_back(name);
  return names;
}

const AttackInfo* find_attack_info(const std::string& name) {
  const auto it = registry().find(name);
  return it == registry().end() ? nullptr : &it->second.info;
}

AnyAttack make_attack(const std::string& name, YamlSection& options) {
  const auto it = registry().find(name);
  if (it == registry().end()) {
    std::string known;
    for (const auto& n : attack_names()) known += (known.empty() ? "" : ", ") + n;
    throw UserError("unknown attack \"" + name + "\" (registered: " + known + ")");
  }
  AnyAttack attack;
  if (it->second.factory) attack.on_responses = it->second.factory(options);
  if (it->second.choice_factory) attack.on_choices = it->second.choice_factory(options);
  options.finish();
  return attack;
}

double score_responses(const ResponseScorer& scorer, const std::vector<size_t>& items,
                       const std::vector<std::string>& responses) {
  std::vector<double> scores;
  for (size_t k = 0; k < items.size(); ++k) scores.push_back(scorer.score(items[k], responses[k]));
  return scorer.aggregate(items, scores);
}

std::vector<std::string> policy_answers(EvalModel& policy, const ResponseScorer& scorer,
                                        const std::vector<size_t>& items, double temperature, uint64_t seed,
                                        uint64_t first_stream) {
  std::vector<std::vector<int32_t>> prompts;
  for (size_t i : items)
    prompts.push_back(scorer.chat() ? policy.chat_prompt(scorer.prompt(i))
                                    : policy.tokenizer().encode(scorer.prompt(i) + scorer.text_suffix()));
  GenerationOptions options;
  options.max_new_tokens = scorer.max_new_tokens();
  options.temperature = temperature;
  options.seed = seed;
  options.first_stream = first_stream;
  options.stop_ids = {policy.tokenizer().eos_id(), policy.tokenizer().pad_id()};
  // Greedy decoding as the suites decode (eval_hooks generate_answers), so the starting policy's
  // answers here are the ones its eval scored; samples never draw the ids past the tokenizer's.
  if (temperature > 0) options.vocab_limit = policy.tokenizer().id_count();
  return policy.generate(prompts, options);
}

std::vector<std::vector<double>> choice_logliks(EvalModel& policy, const ChoiceScorer& scorer,
                                                const std::vector<size_t>& items) {
  std::vector<ScoringRequest> requests;
  for (size_t i : items)
    for (const auto& continuation : scorer.continuations(i)) {
      if (scorer.chat()) {
        const bool spaced = !continuation.empty() && continuation[0] == ' ';
        requests.push_back({policy.chat_prompt(scorer.context(i)),
                            policy.tokenizer().encode(spaced ? continuation.substr(1) : continuation)});
      } else {
        requests.push_back(policy.text_request(scorer.context(i), continuation));
      }
    }
  const std::vector<double> ll = policy.loglikelihoods(requests);
  std::vector<std::vector<double>> out;
  size_t next = 0;
  for (size_t i : items) {
    const size_t n = scorer.continuations(i).size();
    out.emplace_back(ll.begin() + static_cast<long>(next), ll.begin() + static_cast<long>(next + n));
    next += n;
  }
  return out;
}

}  // namespace posttrain
