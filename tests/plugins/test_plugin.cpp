// The out-of-tree plugin path, as a user takes it: install posttrain, build examples/plugin_method
// against the installed CMake package, list and train the new method. Its loss is checked against
// full-vocabulary log-softmax arithmetic done here, and at epsilon = 0 it must equal plain SFT.
#include <torch/torch.h>
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <map>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "models/chat.h"
#include "models/checkpoint.h"
#include "tests/test_util.h"

namespace fs = std::filesystem;

namespace {

struct Installed {
  std::string prefix, plugin;
};

// Installs this build into a temporary prefix and builds the example plugin against it (once).
const Installed& installed() {
  static test::TempDir tmp("plugin");
  static const Installed result = [] {
    Installed r{tmp / "prefix", tmp / "plugin-build/libsft_label_smoothing.so"};
    auto install = test::run("cmake --install " + std::string(POSTTRAIN_BUILD_DIR) + " --prefix " + r.prefix);
    if (install.exit_code != 0) FAIL("install failed: " << install.output);
    auto configure = test::run("cmake -S " + test::source_dir() + "/examples/plugin_method -B " + tmp / "plugin-build" +
                               " -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=" + r.prefix);
    if (configure.exit_code != 0) FAIL("configuring the plugin failed: " << configure.output);
    auto build = test::run("cmake --build " + tmp / "plugin-build" + " -j 2");
    if (build.exit_code != 0) FAIL("building the plugin failed: " << build.output);
    return r;
  }();
  return result;
}

// A plugin's source folder (relative to the source tree) built against the installed prefix.
std::string built_plugin(const std::string& source, const std::string& library) {
  const std::string build = installed().prefix + "/../" + library + "-build";
  auto configure = test::run("cmake -S " + test::source_dir() + "/" + source + " -B " + build +
                             " -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH=" + installed().prefix);
  if (configure.exit_code != 0) FAIL("configuring " << source << " failed: " << configure.output);
  auto compile = test::run("cmake --build " + build + " -j 2");
  if (compile.exit_code != 0) FAIL("building " << source << " failed: " << compile.output);
  return build + "/lib" + library + ".so";
}

// The example eval-suite plugin (examples/plugin_suite) and the sandbox test's probing attack.
std::string suite_plugin() {
  static const std::string path = built_plugin("examples/plugin_suite", "csv_mc_suite");
  return path;
}
std::string probe_plugin() {
  static const std::string path = built_plugin("tests/plugins/probe_attack", "probe_attack");
  return path;
}

test::CommandResult run_installed(const std::string& args) {
  return test::run("POSTTRAIN_CACHE=" + test::test_cache_dir() + " " + installed().prefix + "/bin/posttrain " + args);
}

}  // namespace

TEST_CASE("a plugin built against the installed package registers and trains a new method", "[plugins]") {
  const std::string recipe = test::source_dir() + "/examples/plugin_method/recipe.yaml";
  auto listed = run_installed("methods --plugin " + installed().plugin);
  REQUIRE(listed.exit_code == 0);
  CHECK(listed.output.find("sft_label_smoothing") != std::string::npos);

  test::TempDir tmp("plugin-runs");
  const std::string common = " plugins=[" + installed().plugin + "] train.steps=3 checkpoint.every=0";
  // epsilon = 0 is plain SFT: same losses and weights as method: sft on the same recipe.
  auto smooth0 =
      run_installed("run " + recipe + common + " output_dir=" + tmp / "eps0" + " sft_label_smoothing.epsilon=0");
  INFO(smooth0.output);
  REQUIRE(smooth0.exit_code == 0);
  auto sft =
      run_installed("run " + recipe + common + " output_dir=" + tmp / "sft" + " method=sft sft_label_smoothing=null");
  INFO(sft.output);
  REQUIRE(sft.exit_code == 0);
  auto a = test::run_losses(tmp / "eps0"), b = test::run_losses(tmp / "sft");
  REQUIRE(a.size() == 3);
  for (size_t i = 0; i < a.size(); ++i) CHECK(a[i] == Approx(b[i]).epsilon(1e-6));

  // epsilon = 0.3 on one example: step-1 loss against full log-softmax over the vocabulary.
  test::write_text(
      tmp / "one.jsonl",
      R"({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there."}]})"
      "\n");
  auto one = run_installed(
      "run " + recipe + common + " output_dir=" + tmp / "one" +
      " sft_label_smoothing.epsilon=0.3 train.steps=1 train.batch_size=4 data.train=" + tmp / "one.jsonl");
  REQUIRE(one.exit_code == 0);
  auto base = posttrain::load_model(test::test_cache_dir() + "/bases/tiny-seed0");
  auto tokenizer = posttrain::Tokenizer::from_dir(test::tokenizer_dir());
  auto chat = posttrain::render_chat(tokenizer, {{"user", "Hi"}, {"assistant", "Hello there."}}, false);
  torch::NoGradGuard no_grad;
  auto ids = torch::tensor(std::vector<int64_t>(chat.ids.begin(), chat.ids.end())).unsqueeze(0);
  auto positions = torch::arange(ids.size(1)).unsqueeze(0);
  auto logits = torch::matmul(base->hidden_states(ids, positions)[0], base->lm_head_weight().t());  // [T, V], all of it
  auto logp = torch::log_softmax(logits.to(torch::kFloat64), 1);
  double total = 0;
  int count = 0;
  for (size_t t = chat.assistant_spans[0].first; t < chat.assistant_spans[0].second; ++t, ++count)
    total += 0.7 * -logp[t - 1][chat.ids[t]].item<double>() + 0.3 * -logp[t - 1].mean().item<double>();
  CHECK(test::run_losses(tmp / "one")[0] == Approx(total / count).epsilon(1e-5));

  // Loading failures are clear errors.
  auto missing = run_installed("run " + recipe + " plugins=[" + tmp / "nope.so" + "]");
  CHECK(missing.exit_code == 2);
  CHECK(missing.output.find("plugin library not found") != std::string::npos);
  auto not_plugin = run_installed("run " + recipe + " plugins=[" + installed().prefix + "/lib/libposttrain_core.so]");
  CHECK(not_plugin.exit_code == 2);
  CHECK(not_plugin.output.find("not a posttrain plugin") != std::string::npos);
}

TEST_CASE("an eval suite plugin registers a suite that scores like the built-in one on the same items",
          "[plugins][evals]") {
  const std::string plugin = suite_plugin();
  auto listed = run_installed("methods --plugin " + plugin);
  REQUIRE(listed.exit_code == 0);
  CHECK(listed.output.find("csv_mc") != std::string::npos);

  // The same three items as CSV (for the plugin) and as the built-in mc suite's JSONL.
  test::TempDir tmp("suite-plugin");
  test::write_text(tmp / "items.csv",
                   "question,correct,incorrect\n"
                   "What is 2 + 2?,4,5 | 22\n"
                   "\"Which is a colour, of these?\",red,dog | seven\n"
                   "Capital of France?,Paris,Rome | Madrid | Oslo\n");
  test::write_text(tmp / "items.jsonl",
                   "{\"question\": \"What is 2 + 2?\", \"choices\": [\"4\", \"5\", \"22\"], \"answer\": 0}\n"
                   "{\"question\": \"Which is a colour, of these?\", \"choices\": [\"red\", \"dog\", \"seven\"], "
                   "\"answer\": 0}\n"
                   "{\"question\": \"Capital of France?\", \"choices\": [\"Paris\", \"Rome\", \"Madrid\", \"Oslo\"], "
                   "\"answer\": 0}\n");
  const std::string model = test::test_cache_dir() + "/plugin-suite-base";
  if (!fs::exists(model)) REQUIRE(run_installed("init-base --preset tiny --seed 4 --out " + model).exit_code == 0);
  auto by_plugin = run_installed("eval --plugin " + plugin + " --model " + model +
                                 " --suite csv_mc --option data=" + tmp / "items.csv" + " --out " + tmp / "plugin");
  INFO(by_plugin.output);
  REQUIRE(by_plugin.exit_code == 0);
  auto built_in = run_installed("eval --model " + model + " --suite mc --option data=" + tmp / "items.jsonl" +
                                " --out " + tmp / "builtin");
  REQUIRE(built_in.exit_code == 0);
  const auto a = nlohmann::json::parse(test::read_text(tmp / "plugin/evals/csv_mc.json"));
  const auto b = nlohmann::json::parse(test::read_text(tmp / "builtin/evals/mc.json"));
  CHECK(a["items"] == 3);
  for (const char* score : {"acc", "acc_norm", "mc2"})
    CHECK(a["scores"][score]["value"].get<double>() == Approx(b["scores"][score]["value"].get<double>()).margin(1e-9));
  CHECK(a["robustness"]["perturbations"].size() == b["robustness"]["perturbations"].size());
  auto unknown = run_installed("eval --model " + model + " --suite csv_mc --option data=" + tmp / "items.csv");
  CHECK(unknown.exit_code == 2);
  CHECK(unknown.output.find("unknown eval suite \"csv_mc\"") != std::string::npos);
}

TEST_CASE("a hackathon's plugin attacks run in a sandbox that hides the sealed items, the disk and the network",
          "[plugins][hackathon]") {
  test::TempDir tmp("plugin-sandbox");
  const std::string ev = tmp / "event";
  REQUIRE(run_installed("testbed --seed 3 --out " + tmp / "testbed").exit_code == 0);
  for (int seed : {1, 2, 3})
    REQUIRE(run_installed("init-base --preset tiny --seed " + std::to_string(seed) + " --out " +
                          tmp / ("m" + std::to_string(seed)))
                .exit_code == 0);
  const std::string models = " --base " + tmp / "m1" + " --honest a=" + tmp / "m2" + " --honest b=" + tmp / "m3" +
                             " --items refusal=" + tmp / "testbed/eval_refusal.jsonl" +
                             " --items prompts=" + tmp / "testbed/eval_prompts.jsonl --gold prompts --seconds 60";
  REQUIRE(run_installed("hackathon init " + ev + models + " --allow-plugins").exit_code == 0);
  const auto submission = [&](const std::string& name, const std::string& yaml,
                              const std::string& library = probe_plugin()) {
    const std::string dir = tmp / name;
    fs::create_directories(dir);
    test::write_text(dir + "/submission.yaml", yaml);
    fs::copy_file(library, dir + "/" + fs::path(library).filename().string());
    return dir;
  };
  const std::string attack = "kind: attack\nplugin: libprobe_attack.so\nattack: probe\n";
  const std::string sealed = ev + "/sealed/refusal.jsonl", outside = tmp / "written-by-plugin.txt";

  // A listener outside the sandbox, which this process can reach: only the sandbox stops the plugin.
  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  REQUIRE(::listen(listener, 8) == 0);
  socklen_t length = sizeof address;
  ::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length);
  const int port = ntohs(address.sin_port);
  const int probe_fd = ::socket(AF_INET, SOCK_STREAM, 0);
  CHECK(::connect(probe_fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  ::close(probe_fd);
  CHECK(!test::read_text(sealed).empty());  // readable from here

  const std::string suite = tmp / "suite";
  fs::create_directories(suite);
  test::write_text(suite + "/submission.yaml",
                   "kind: suite\nname: refusal\nsuite: refusal\nitems: refusal\noptions: {max_new_tokens: 8}\n");
  const std::vector<std::pair<std::string, std::string>> entries = {
      {suite, "blue"},
      // examples/plugin_attack, as docs/hackathon.md shows it
      {submission("behaves", "kind: attack\nname: behaves\nplugin: libkeep_base_attack.so\nattack: keep_base\n",
                  built_plugin("examples/plugin_attack", "keep_base_attack")),
       "red"},
      {submission("reads", "name: reads\n" + attack + "options: {action: read, path: " + sealed + "}\n"), "r1"},
      {submission("writes", "name: writes\n" + attack + "options: {action: write, path: " + outside + "}\n"), "r2"},
      {submission("connects",
                  "name: connects\n" + attack + "options: {action: connect, port: " + std::to_string(port) + "}\n"),
       "r3"}};
  for (const auto& [dir, team] : entries) {
    auto r = run_installed("hackathon submit " + ev + " " + dir + " --team " + team);
    INFO(r.output);
    REQUIRE(r.exit_code == 0);
  }
  auto r = run_installed("hackathon judge " + ev);
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  ::close(listener);
  const auto results = nlohmann::json::parse(test::read_text(ev + "/judged/results.json"));
  std::map<std::string, std::string> failed;  // attack name -> reason, on the private split
  const auto names = results["private"]["attacks"];
  for (const auto& replay : results["private"]["replays"])
    for (const auto& a : names)
      if (a["sha256"] == replay["attack"]) failed[a["name"]] = replay["result"].value("failed", std::string());
  CHECK(failed.size() == 4);
  CHECK(failed["behaves"].empty());  // its policy (the base) was replayed on the sealed items
  for (const auto& replay : results["private"]["replays"])
    if (replay["attack"] == names[0]["sha256"]) CHECK(replay["result"]["suite_gain"] == 0.0);  // the base itself
  CHECK(failed["reads"].find("in the sandbox: exit code") != std::string::npos);
  CHECK(failed["reads"].find("probe: could not read " + sealed) != std::string::npos);
  CHECK(failed["writes"].find("probe: could not write " + outside) != std::string::npos);
  CHECK(!fs::exists(outside));
  CHECK(failed["connects"].find("probe: could not connect to 127.0.0.1:" + std::to_string(port)) != std::string::npos);

  // Off unless the rules allow them; plugin suites never (they would have to read the sealed items).
  REQUIRE(run_installed("hackathon init " + tmp / "closed" + models).exit_code == 0);
  r = run_installed("hackathon submit " + tmp / "closed" + " " + tmp / "behaves" + " --team red");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("plugin submissions are off") != std::string::npos);
  test::write_text(tmp / "behaves/submission.yaml",
                   "kind: suite\nname: x\nplugin: libkeep_base_attack.so\nsuite: csv_mc\nitems: refusal\n");
  r = run_installed("hackathon submit " + ev + " " + tmp / "behaves" + " --team blue");
  CHECK(r.exit_code == 2);
  CHECK(r.output.find("plugin suites are not accepted") != std::string::npos);
}
