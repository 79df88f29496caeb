// posttrain theory register|reveal|review|score: theories as registered predictions, in a
// hash-chained ledger, scored against a matrix's runs (docs/theories.md).
#include <fstream>
#include <iostream>
#include <map>

#include "apps/cli.h"
#include "core/error.h"
#include "core/files.h"
#include "report/report.h"
#include "theories/board.h"

namespace posttrain::cli {

namespace {

// 128 random bits as hex, from the kernel: a salt nobody can guess from the commitment.
std::string random_salt() {
  std::ifstream urandom("/dev/urandom", std::ios::binary);
  unsigned char bytes[16];
  if (!urandom.read(reinterpret_cast<char*>(bytes), sizeof(bytes))) throw UserError("/dev/urandom: cannot read");
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (unsigned char b : bytes) out += hex[b >> 4], out += hex[b & 15];
  return out;
}

std::map<std::string, int> parse_scores(const std::string& text) {
  std::map<std::string, int> scores;
  size_t start = 0;
  while (start < text.size()) {
    const size_t comma = text.find(',', start), end = comma == std::string::npos ? text.size() : comma;
    const std::string item = text.substr(start, end - start);
    const size_t eq = item.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == item.size())
      throw UserError("--scores: \"" + item + "\" is not criterion=score");
    try {
      size_t used = 0;
      const int value = std::stoi(item.substr(eq + 1), &used);
      if (used != item.size() - eq - 1) throw std::invalid_argument("trailing");
      scores[item.substr(0, eq)] = value;
    } catch (const std::exception&) {
      throw UserError("--scores: \"" + item + "\": the score must be an integer 1..5");
    }
    start = end + 1;
  }
  return scores;
}

}  // namespace

int theory(const std::vector<std::string>& args) {
  const std::string usage =
      "register THEORY.yaml --ledger L.jsonl [--assumptions A.yaml]\n"
      "       posttrain theory reveal THEORY.yaml --ledger L.jsonl --salt HEX [--assumptions A.yaml]\n"
      "       posttrain theory review --ledger L.jsonl --theory ID --reviewer NAME --scores clarity=4,rigour=3\n"
      "       posttrain theory score --ledger L.jsonl --runs MATRIX_OUTPUT_DIR [--out DIR] [--min-resolved N]";
  if (args.empty() || args[0] == "--help" || args[0] == "-h") {
    std::cout << "usage: posttrain theory " << usage << "\n";
    return args.empty() ? kExitUserError : 0;
  }
  const std::string action = args[0];
  const std::vector<std::string> rest(args.begin() + 1, args.end());
  po::options_description options("theory " + action + " options");
  std::string file, ledger, assumptions, salt, theory_id, reviewer, scores, runs, out;
  int min_resolved = 3;
  options.add_options()("ledger", po::value(&ledger)->required(), "the ledger (JSONL, hash-chained)");
  po::positional_options_description positional;
  if (action == "register" || action == "reveal") {
    options.add_options()("theory-file", po::value(&file)->required(), "the theory (YAML)")(
        "assumptions", po::value(&assumptions)->default_value("recipes/theories/assumptions.yaml"),
        "the assumptions registry every theory draws its ids from");
    positional.add("theory-file", 1);
    if (action == "reveal") options.add_options()("salt", po::value(&salt)->required(), "the salt register printed");
  } else if (action == "review") {
    options.add_options()("theory", po::value(&theory_id)->required(), "the theory's id")(
        "reviewer", po::value(&reviewer)->required(), "who reviews")(
        "scores", po::value(&scores)->required(), "criterion=score pairs, 1..5, e.g. clarity=4,rigour=3");
  } else if (action == "score") {
    options.add_options()("runs", po::value(&runs)->required(), "the matrix's output folder")(
        "out", po::value(&out), "where theories.json, theories.md and theories.html go (default: --runs)")(
        "min-resolved", po::value(&min_resolved)->default_value(3),
        "decided forecasts a theory needs to enter the Pareto front");
  } else {
    throw UserError("theory: unknown action \"" + action + "\" (register, reveal, review, score)");
  }
  const std::map<std::string, std::string> action_usage = {
      {"register", "THEORY.yaml --ledger L.jsonl [--assumptions A.yaml]"},
      {"reveal", "THEORY.yaml --ledger L.jsonl --salt HEX [--assumptions A.yaml]"},
      {"review", "--ledger L.jsonl --theory ID --reviewer NAME --scores clarity=4,rigour=3"},
      {"score", "--ledger L.jsonl --runs MATRIX_OUTPUT_DIR [--out DIR] [--min-resolved N]"}};
  po::variables_map vm;
  if (!parse("theory " + action, action_usage.at(action), options, rest, vm, &positional)) return 0;

  if (action == "register") {
    const Theory t = read_theory(file, assumptions);
    const std::string fresh_salt = random_salt();
    const auto entry = register_theory(t, ledger, fresh_salt);
    std::cout << nlohmann::json({{"theory", t.id},
                                 {"line", entry["seq"].get<int64_t>() + 1},
                                 {"commitment", entry["commitment"]},
                                 {"post_hoc", entry["post_hoc"]},
                                 {"salt", fresh_salt}})
                     .dump()
              << "\n";
    std::cerr << "posttrain: registered " << t.id << " in " << ledger
              << (entry["post_hoc"].get<bool>() ? " (POST HOC: a variant it names has run)" : "")
              << ". Keep the salt: `posttrain theory reveal` needs it.\n";
  } else if (action == "reveal") {
    const Theory t = read_theory(file, assumptions);
    const auto entry = reveal_theory(t, ledger, salt);
    std::cout << nlohmann::json({{"theory", t.id}, {"line", entry["seq"].get<int64_t>() + 1}}).dump() << "\n";
  } else if (action == "review") {
    const auto entry = review_theory(ledger, theory_id, reviewer, parse_scores(scores));
    std::cout << nlohmann::json({{"theory", theory_id}, {"line", entry["seq"].get<int64_t>() + 1}}).dump() << "\n";
  } else {
    if (min_resolved < 0) throw UserError("theory score: --min-resolved must be 0 or more");
    const nlohmann::json board = score_theories(ledger, runs, min_resolved);
    if (out.empty()) out = runs;
    write_theories_report(board, out);
    std::cout << (std::filesystem::path(out) / "theories.json").string() << "\n";
  }
  return 0;
}

}  // namespace posttrain::cli
