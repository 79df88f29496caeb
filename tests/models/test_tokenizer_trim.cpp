// The testbed's trimmed tokenizer (posttrain testbed writes <out>/tokenizer): every text the testbed
// wrote encodes to the same tokens as with the full Qwen3 tokenizer (ids mapped through trim.json),
// the vocabulary is a small fraction of the full one, and text outside the testbed still round-trips.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <functional>

#include "models/chat.h"
#include "models/tokenizer.h"
#include "tests/test_util.h"

TEST_CASE("the trimmed testbed tokenizer encodes every testbed text as the full tokenizer does",
          "[models][tokenizer][testbed]") {
  test::TempDir tmp("trim");
  auto r = test::run(test::posttrain_bin() + " testbed --out " + tmp / "tb" +
                     " --corpus-documents 300 --sft-examples 50 --pairs 50 --rl-prompts 50 --eval-items 60" +
                     " --constitution " + test::source_dir() + "/recipes/constitutions/default.yaml");
  INFO(r.output);
  REQUIRE(r.exit_code == 0);
  const auto full = posttrain::Tokenizer::from_dir(test::tokenizer_dir());
  const auto trimmed = posttrain::Tokenizer::from_dir(tmp / "tb/tokenizer");
  const auto record = nlohmann::json::parse(test::read_text(tmp / "tb/tokenizer/trim.json"));
  const auto original = record["original_ids"].get<std::vector<int32_t>>();
  CHECK(original.size() == static_cast<size_t>(trimmed.id_count()));
  CHECK(trimmed.id_count() < full.id_count() / 20);  // tens of times smaller LM head
  const auto mapped = [&](const std::vector<int32_t>& ids) {
    std::vector<int32_t> out;
    for (int32_t id : ids) out.push_back(original.at(static_cast<size_t>(id)));
    return out;
  };

  int64_t texts = 0, mismatches = 0;
  std::function<void(const nlohmann::json&)> check = [&](const nlohmann::json& value) {
    if (value.is_string()) {
      ++texts;
      const std::string text = value.get<std::string>();
      if (mapped(trimmed.encode(text)) != full.encode(text)) {
        ++mismatches;
        UNSCOPED_INFO("differs: " << text);
      }
    }
    if (value.is_structured())
      for (const auto& item : value) check(item);
  };
  for (const auto& entry : std::filesystem::directory_iterator(tmp / "tb"))
    if (entry.path().extension() == ".jsonl") {
      std::ifstream in(entry.path());
      for (std::string line; std::getline(in, line);) check(nlohmann::json::parse(line));
    }
  CHECK(texts > 1000);
  CHECK(mismatches == 0);

  // A whole chat, special tokens included, as the trainers render it: the testbed speaks ChatML (the
  // trimmed tokenizer has no chat_template), as the full tokenizer does without its template.
  CHECK(trimmed.chat_template().empty());
  const std::vector<posttrain::ChatMessage> chat = {{"user", "What is 12 + 30?"}, {"assistant", "The answer is 42."}};
  CHECK(mapped(posttrain::render_chat(trimmed, chat, false).ids) ==
        posttrain::render_chat(full.with_chat_template("", ""), chat, false).ids);
  CHECK(original.at(static_cast<size_t>(trimmed.eos_id())) == full.eos_id());

  // Outside the testbed: byte tokens still spell everything, in more tokens.
  const std::string foreign = "Zürich 東京 🎉 x=λ·y; 'quoted'\n\ttabs";
  CHECK(trimmed.decode(trimmed.encode(foreign)) == foreign);
  CHECK(trimmed.encode(foreign).size() >= full.encode(foreign).size());
}
