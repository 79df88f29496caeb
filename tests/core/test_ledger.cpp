// The hash-chained ledger (core/ledger.h): entries read back verified, their hash is sha256 of the
// canonical line (checked with the system's sha256sum, a second implementation), and a line
// edited, removed or inserted after it was written, or a torn last line, is named by its line.
#include <catch2/catch.hpp>

#include <fstream>

#include "core/ledger.h"
#include "tests/test_util.h"

namespace {

std::vector<std::string> lines_of(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

void write_lines(const std::string& path, const std::vector<std::string>& lines) {
  std::string text;
  for (const auto& l : lines) text += l + "\n";
  test::write_text(path, text);
}

}  // namespace

TEST_CASE("ledger: appended entries chain, verify, and hash as sha256sum says", "[core][ledger]") {
  test::TempDir tmp("ledger");
  const std::string path = tmp / "ledger.jsonl";
  CHECK(posttrain::read_ledger(path).empty());  // no file: an empty ledger
  for (int i = 0; i < 3; ++i) posttrain::append_ledger(path, {{"kind", "note"}, {"n", i}});
  const auto entries = posttrain::read_ledger(path);
  REQUIRE(entries.size() == 3);
  CHECK(entries[0]["prev"] == posttrain::kLedgerGenesis);
  CHECK(entries[2]["prev"] == entries[1]["hash"]);
  CHECK(entries[1]["n"] == 1);
  CHECK(entries[1]["seq"] == 1);

  // The hash is sha256 of the line as written, without its "hash" field (keys sorted, no spaces).
  nlohmann::json body = entries[0];
  body.erase("hash");
  test::write_text(tmp / "body.txt", body.dump());
  const auto sum = test::run("sha256sum " + tmp / "body.txt");
  CHECK(sum.output.substr(0, 64) == entries[0]["hash"].get<std::string>());
  CHECK_THROWS(posttrain::append_ledger(path, {{"hash", "mine"}}));  // reserved fields
}

TEST_CASE("ledger: an edited, removed or inserted line, or a torn one, is named", "[core][ledger]") {
  test::TempDir tmp("ledger-tamper");
  const std::string path = tmp / "ledger.jsonl";
  for (int i = 0; i < 4; ++i) posttrain::append_ledger(path, {{"kind", "note"}, {"n", i}});
  const std::vector<std::string> good = lines_of(path);
  const auto error = [&](const std::vector<std::string>& lines) {
    write_lines(path, lines);
    return test::user_error_of([&] { posttrain::read_ledger(path); });
  };

  // Line 2's content changed: its own hash no longer matches.
  auto edited = good;
  edited[1].replace(edited[1].find("\"n\":1"), 5, "\"n\":7");
  CHECK(error(edited).find(path + ":2: was edited after it was written") != std::string::npos);

  // Line 2 edited and re-hashed by the forger: line 3 no longer follows it.
  auto forged = good;
  auto entry = nlohmann::json::parse(forged[1]);
  entry["n"] = 7;
  entry["hash"] = posttrain::ledger_entry_hash(entry);
  forged[1] = entry.dump();
  CHECK(error(forged).find(path + ":3: does not follow the line before it") != std::string::npos);

  // Line 2 removed.
  auto removed = good;
  removed.erase(removed.begin() + 1);
  CHECK(error(removed).find(path + ":2: sequence number 2 where 1 belongs") != std::string::npos);

  // A write cut short.
  auto torn = good;
  torn.back() = torn.back().substr(0, 20);
  CHECK(error(torn).find(path + ":4: not a ledger line") != std::string::npos);

  // A broken ledger is never extended.
  write_lines(path, edited);
  CHECK(test::user_error_of([&] {
          posttrain::append_ledger(path, {{"kind", "note"}});
        }).find(":2: was edited") != std::string::npos);
  CHECK(lines_of(path).size() == 4);
  write_lines(path, good);
  CHECK(posttrain::read_ledger(path).size() == 4);
}
