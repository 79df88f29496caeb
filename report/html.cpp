// The HTML renderer: one self-contained page (inline CSS, inline SVG charts, no scripts or network).
#include <sstream>

#include "report/document.h"

namespace posttrain::report {

std::string render_html(const Document& doc) {
  std::ostringstream html;
  html << "<!DOCTYPE html><html><head><meta charset='utf-8'><title>" << html_escape(doc.title)
       << "</title><style>body{font-family:sans-serif;margin:24px;max-width:1200px}"
          "table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:4px 8px;font-size:13px}"
          "th{background:#f3f3f3}.bad{color:#b00;font-weight:bold}.ok{color:#070}"
          ".banner{padding:8px 12px;border-radius:4px;margin:8px 0}pre{font-size:12px;white-space:pre-wrap}"
          "</style></head><body>";
  html << "<h1>" << html_escape(doc.title) << "</h1>";
  for (const auto& b : doc.blocks) {
    switch (b.kind) {
      case Block::Kind::kHeading:
        html << "<h" << b.level << ">" << html_escape(b.text) << "</h" << b.level << ">";
        break;
      case Block::Kind::kParagraph:
        html << "<p" << (b.bad ? " class='bad'" : "") << ">" << html_escape(b.text) << "</p>";
        break;
      case Block::Kind::kBanner:
        html << "<div class='banner' style='background:" << (b.good ? "#e6f4e6" : "#fbe3e3") << "'>"
             << html_escape(b.text) << "<span class='" << (b.good ? "ok" : "bad") << "'>" << html_escape(b.emphasis)
             << "</span></div>";
        break;
      case Block::Kind::kTable:
        html << "<table><tr>";
        for (const auto& h : b.header) html << "<th>" << html_escape(h) << "</th>";
        html << "</tr>";
        for (const auto& row : b.rows) {
          html << "<tr>";
          for (const auto& c : row)
            html << "<td"
                 << (c.bad    ? " class='bad'"
                     : c.good ? " class='ok'"
                              : "")
                 << ">" << html_escape(c.text) << "</td>";
          html << "</tr>";
        }
        html << "</table>";
        break;
      case Block::Kind::kList:
        html << "<ul>";
        for (const auto& item : b.items)
          html << "<li>" << (item.code.empty() ? "" : "<code>" + html_escape(item.code) + "</code>")
               << html_escape(item.text) << "</li>";
        html << "</ul>";
        break;
      case Block::Kind::kSvg:
        html << b.text;
        break;
    }
  }
  html << "</body></html>\n";
  return html.str();
}

}  // namespace posttrain::report
