// Constitutional AI's building blocks: a constitution (principles, each with a critique request, a
// revision request and a comparison question), the chat prompts of SL-CAI's critique and revision
// rounds, the RLAIF comparison prompt, and the AI preference label averaged over both orders of the
// two answers, which cancels a judge's preference for a position.
#pragma once

#include <string>
#include <vector>

#include "models/chat.h"

namespace posttrain {

struct Principle {
  std::string name;
  std::string critique;  // asks for a critique of the assistant's last answer
  std::string revision;  // asks for a rewrite of that answer
  std::string comparison;  // the question a judge answers about two answers
};

struct Constitution {
  std::string name;
  std::vector<Principle> principles;
};

// Strict YAML (name, principles: [{name, critique, revision, comparison}]); UserError naming
// file:line and key for anything else, or for no principles.
Constitution load_constitution(const std::string& path);

// The conversation that asks for a critique: the prompt, the answer, then "Critique request: ...".
std::vector<ChatMessage> critique_messages(const std::string& prompt, const std::string& answer,
                                           const Principle& principle);
// ... followed by the critique and "Revision request: ...": the model's reply is the revised answer.
std::vector<ChatMessage> revision_messages(const std::string& prompt, const std::string& answer,
                                           const std::string& critique, const Principle& principle);

// The judge's prompt: the conversation, the principle's question, (A) first and (B) second, ending
// in "The better answer is" so the continuations " (A)" and " (B)" can be scored.
std::string comparison_prompt(const std::string& prompt, const std::string& first, const std::string& second,
                              const Principle& principle);

// P(answer x is better than y) from the judge's log-likelihoods of " (A)" / " (B)" with x shown first
// (ll_a_xy, ll_b_xy) and with y shown first (ll_a_yx, ll_b_yx): the mean of the two orders,
// 0.5 * [softmax(ll_a_xy, ll_b_xy)_A + softmax(ll_a_yx, ll_b_yx)_B].
double averaged_preference(double ll_a_xy, double ll_b_xy, double ll_a_yx, double ll_b_yx);

}  // namespace posttrain
