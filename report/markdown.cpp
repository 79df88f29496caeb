// The Markdown renderer: GitHub tables, bold for flagged cells, charts left out.
#include <sstream>

#include "report/document.h"

namespace posttrain::report {

namespace {

std::string cell_markdown(const Cell& c) {
  std::string text = c.text;
  for (auto& ch : text)
    if (ch == '\n' || ch == '\r') ch = ' ';  // a table row is one line
  for (size_t at = text.find('|'); at != std::string::npos; at = text.find('|', at + 2)) text.replace(at, 1, "\\|");
  return c.bad ? "**" + text + "**" : text;
}

}  // namespace

std::string render_markdown(const Document& doc) {
  std::ostringstream md;
  md << "# " << doc.title << "\n";
  for (const auto& b : doc.blocks) {
    if (b.html_only) continue;
    switch (b.kind) {
      case Block::Kind::kHeading:
        md << "\n" << std::string(static_cast<size_t>(b.level), '#') << " " << b.text << "\n";
        break;
      case Block::Kind::kParagraph:
        md << "\n" << (b.bad ? "**" + b.text + "**" : b.text) << "\n";
        break;
      case Block::Kind::kBanner:
        md << "\n" << b.text << b.emphasis << ".\n";
        break;
      case Block::Kind::kTable: {
        md << "\n|";
        for (const auto& h : b.header) md << " " << h << " |";
        md << "\n|";
        for (size_t i = 0; i < b.header.size(); ++i) md << " --- |";
        md << "\n";
        for (const auto& row : b.rows) {
          md << "|";
          for (const auto& c : row) md << " " << cell_markdown(c) << " |";
          md << "\n";
        }
        break;
      }
      case Block::Kind::kList:
        md << "\n";
        for (const auto& item : b.items)
          md << "- " << (item.code.empty() ? "" : "`" + item.code + "`") << item.text << "\n";
        break;
      case Block::Kind::kSvg:
        break;
    }
  }
  return md.str();
}

}  // namespace posttrain::report
