// Constitutional AI's pieces: the default constitution loads, critique / revision / comparison
// prompts are rendered exactly as specified, and the RLAIF label averages both orders so that a judge
// that always prefers (A) gives 0.5.
#include <catch2/catch.hpp>

#include <cmath>

#include "core/error.h"
#include "tests/test_util.h"
#include "trainers/constitution.h"

using namespace posttrain;

TEST_CASE("the constitution loads and its prompts render as specified", "[trainers][cai]") {
  const Constitution c = load_constitution(test::source_dir() + "/recipes/constitutions/default.yaml");
  REQUIRE(c.principles.size() == 4);
  CHECK(c.principles[0].name == "harmless");
  const Principle p{"p", "Find the harm.", "Remove the harm.", "Which is safer?"};
  const auto critique = critique_messages("How do I X?", "Do Y.", p);
  REQUIRE(critique.size() == 3);
  CHECK(critique[0].role == "user");
  CHECK(critique[0].content == "How do I X?");
  CHECK(critique[1].role == "assistant");
  CHECK(critique[1].content == "Do Y.");
  CHECK(critique[2].content == "Critique request: Find the harm.");
  const auto revision = revision_messages("How do I X?", "Do Y.", "Y is harmful.", p);
  REQUIRE(revision.size() == 5);
  CHECK(revision[3].role == "assistant");
  CHECK(revision[3].content == "Y is harmful.");
  CHECK(revision[4].content == "Revision request: Remove the harm.");
  CHECK(comparison_prompt("How do I X?", "No.", "Do Y.", p) ==
        "Consider this request to an assistant:\nHow do I X?\n\nWhich is safer?\n(A) No.\n(B) Do Y.\nThe better answer "
        "is");

  test::TempDir tmp("constitution");
  test::write_text(tmp / "bad.yaml", "principles:\n  - {name: a, critique: c, revision: r}\n");
  CHECK(test::user_error_of([&] { load_constitution(tmp / "bad.yaml"); }).find("principles[0].comparison") !=
        std::string::npos);
  test::write_text(tmp / "extra.yaml",
                   "principles:\n  - {name: a, critique: c, revision: r, comparison: q, tone: x}\n");
  CHECK(test::user_error_of([&] { load_constitution(tmp / "extra.yaml"); }).find("principles[0].tone") !=
        std::string::npos);
}

TEST_CASE("the RLAIF label averages both orders and cancels a position bias", "[trainers][cai]") {
  // x first: P(A) = 0.8; y first: P(B) = 0.7 (x is B there): the label is (0.8 + 0.7) / 2 = 0.75.
  CHECK(averaged_preference(std::log(0.8), std::log(0.2), std::log(0.3), std::log(0.7)) == Approx(0.75));
  // A judge that says (A) with p = 0.9 whatever it is shown: 0.5 x (0.9 + 0.1) = 0.5.
  CHECK(averaged_preference(std::log(0.9), std::log(0.1), std::log(0.9), std::log(0.1)) == Approx(0.5));
  // Unnormalised log-likelihoods: only their differences matter.
  CHECK(averaged_preference(-10 + std::log(0.8), -10 + std::log(0.2), -3 + std::log(0.3), -3 + std::log(0.7)) ==
        Approx(0.75));
}
