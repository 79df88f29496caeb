// The comparison report as a document: a title and a list of blocks (headings, paragraphs, tables,
// lists, charts) that each section file appends to, and that the two renderers (Markdown, HTML)
// walk. A section decides what to say once; the renderers decide how it looks.
#pragma once

#include <string>
#include <vector>

namespace posttrain::report {

struct Cell {
  std::string text;
  bool bad = false;  // a flag a reader must not miss (Markdown: bold; HTML: red)
  bool good = false;  // HTML: green
};

struct ListItem {
  std::string code;  // shown as code (a recipe key), may be empty
  std::string text;
};

struct Block {
  enum class Kind { kHeading, kParagraph, kBanner, kTable, kList, kSvg };
  Kind kind = Kind::kParagraph;
  int level = 2;  // kHeading
  std::string text;  // heading or paragraph text; the banner's lead-in; a chart's SVG markup
  std::string emphasis;  // kBanner: the verdict after the lead-in
  bool bad = false, good = false;  // kParagraph, kBanner: how the text is flagged
  bool html_only = false;  // charts and the headings that introduce them
  std::vector<std::string> header;  // kTable
  std::vector<std::vector<Cell>> rows;  // kTable
  std::vector<ListItem> items;  // kList
};

struct Document {
  std::string title;
  std::vector<Block> blocks;

  void heading(int level, std::string text, bool html_only = false);
  void paragraph(std::string text, bool bad = false);
  void banner(std::string lead, std::string verdict, bool good);
  void table(std::vector<std::string> header, std::vector<std::vector<Cell>> rows);
  void list(std::vector<ListItem> items);
  void svg(std::string markup);  // HTML only; an empty chart is skipped
};

std::string render_markdown(const Document& doc);
std::string render_html(const Document& doc);  // self-contained: inline CSS and SVG, no network

std::string html_escape(const std::string& text);

}  // namespace posttrain::report
