// The smallest plugin attack a hackathon judge accepts: it "trains" nothing and hands back the
// starting policy. A judge replays a plugin attack on the sealed items only through the policy it
// trains inside the sandbox (AttackOutput.policy_dir), so a real one would fine-tune a copy of
// input.policy_dir on input.attack_items (as redteam/trained.cpp's rl and sft_exploit do) and
// return that folder.
#include "redteam/attack.h"
#include "trainers/plugin.h"

namespace {

posttrain::Attack keep_base(posttrain::YamlSection& options) {
  options.finish();  // no options: an unknown key is an error naming file:line
  return [](const posttrain::AttackInput& in) {
    posttrain::AttackOutput out;
    for (size_t item : in.eval_items) out.responses.push_back(in.start_responses[item]);
    out.policy_dir = in.policy_dir;
    out.details = {{"note", "the starting policy, unchanged"}};
    return out;
  };
}

}  // namespace

POSTTRAIN_PLUGIN {
  posttrain::register_attack("keep_base", keep_base, {"the starting policy, unchanged (an example plugin attack)"});
}
