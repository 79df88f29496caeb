// Checks of a self-contained HTML page (the report, the hackathon leaderboard): nothing it would
// fetch, and a headless Chromium renders it to a screenshot that is not blank.
#pragma once

#include <catch2/catch.hpp>

#include <string>

#include "tests/test_util.h"

namespace test {

inline void check_self_contained(const std::string& html) {
  for (const char* fetch : {"src=", "href=", "<link", "<script", "url("}) CHECK(html.find(fetch) == std::string::npos);
}

// Renders `html_path` with headless Chromium into `png` (kept for people to look at) and checks it
// is larger than `min_bytes` (a blank page is a few kB). Skips with a warning without a Chromium.
inline void check_renders(const std::string& html_path, const std::string& png, size_t min_bytes) {
  std::string chromium;
  for (const char* candidate : {"chromium-headless-shell", "chromium", "chromium-browser"})
    if (run(std::string("command -v ") + candidate).exit_code == 0) chromium = candidate;
  if (chromium.empty()) {
    WARN("skipped the rendering check: no headless Chromium (scripts/install-deps.sh installs one)");
    return;
  }
  fs::remove(png);
  const auto r = run(chromium + " --headless --no-sandbox --disable-gpu --window-size=1200,1600 --screenshot=" + png +
                     " file://" + html_path);
  INFO(r.output);
  REQUIRE(fs::exists(png));
  CHECK(fs::file_size(png) > min_bytes);
}

}  // namespace test
