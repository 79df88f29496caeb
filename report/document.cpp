#include "report/document.h"

namespace posttrain::report {

void Document::heading(int level, std::string text, bool html_only) {
  Block b;
  b.kind = Block::Kind::kHeading;
  b.level = level;
  b.text = std::move(text);
  b.html_only = html_only;
  blocks.push_back(std::move(b));
}

void Document::paragraph(std::string text, bool bad) {
  Block b;
  b.kind = Block::Kind::kParagraph;
  b.text = std::move(text);
  b.bad = bad;
  blocks.push_back(std::move(b));
}

void Document::banner(std::string lead, std::string verdict, bool good) {
  Block b;
  b.kind = Block::Kind::kBanner;
  b.text = std::move(lead);
  b.emphasis = std::move(verdict);
  b.good = good;
  b.bad = !good;
  blocks.push_back(std::move(b));
}

void Document::table(std::vector<std::string> header, std::vector<std::vector<Cell>> rows) {
  Block b;
  b.kind = Block::Kind::kTable;
  b.header = std::move(header);
  b.rows = std::move(rows);
  blocks.push_back(std::move(b));
}

void Document::list(std::vector<ListItem> items) {
  Block b;
  b.kind = Block::Kind::kList;
  b.items = std::move(items);
  blocks.push_back(std::move(b));
}

void Document::svg(std::string markup) {
  if (markup.empty()) return;
  Block b;
  b.kind = Block::Kind::kSvg;
  b.text = std::move(markup);
  b.html_only = true;
  blocks.push_back(std::move(b));
}

std::string html_escape(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '<')
      out += "&lt;";
    else if (c == '>')
      out += "&gt;";
    else if (c == '&')
      out += "&amp;";
    else if (c == '"')
      out += "&quot;";
    else
      out += c;
  }
  return out;
}

}  // namespace posttrain::report
