#pragma once
// A labelled scatter plot as a standalone SVG: x on a log scale, y linear,
// every point named in a legend column on the right (leader lines keep
// crowded points readable). Used by peft-bench --svg and the Fashion-MNIST
// example; no plotting dependency needed.

#include <algorithm>
#include <cmath>
#include <sstream>
#include <string>
#include <vector>

namespace peft::bench {

struct ScatterPoint {
  std::string label;
  double x = 1, y = 0;
  std::string color = "#444";
};

struct ScatterAxes {
  std::string title, x_label, y_label;
  std::string y_unit;        // appended to y tick labels, e.g. "%"
  double y_step = 0;         // tick spacing; 0 picks about 8 ticks
};

/// Round tick spacing (1, 2 or 5 × 10^k) giving about `ticks` steps over `span`.
inline double nice_step(double span, int ticks) {
  const double raw = std::max(span, 1e-12) / ticks, magnitude = std::pow(10.0, std::floor(std::log10(raw)));
  for (const double m : {1.0, 2.0, 5.0})
    if (raw <= m * magnitude) return m * magnitude;
  return 10.0 * magnitude;
}

/// Text safe inside an SVG element.
inline std::string xml_escape(const std::string& text) {
  std::string out;
  for (const char c : text) {
    if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else if (c == '&') out += "&amp;";
    else out += c;
  }
  return out;
}

inline std::string scatter_svg(const std::vector<ScatterPoint>& points, const ScatterAxes& axes) {
  const double W = 900, legend_line = 14, left = 84, right = 320, top = 34, bottom = 56;
  const double H = std::max(460.0, top + legend_line * static_cast<double>(points.size()) + bottom);
  double xlo = 1e300, xhi = 1, ylo = 1e300, yhi = -1e300;
  for (const auto& p : points) {
    const double x = std::max(1.0, p.x);
    xlo = std::min(xlo, x), xhi = std::max(xhi, x), ylo = std::min(ylo, p.y), yhi = std::max(yhi, p.y);
  }
  if (points.empty()) xlo = 1, xhi = 10, ylo = 0, yhi = 1;
  const double x0 = std::floor(std::log10(xlo)), x1 = std::max(x0 + 1, std::ceil(std::log10(xhi)));
  const double step = axes.y_step > 0 ? axes.y_step : nice_step(yhi - ylo, 8);
  const double y0 = std::floor(ylo / step) * step, y1 = std::max(y0 + step, std::ceil(yhi / step) * step);
  auto X = [&](double x) { return left + (std::log10(std::max(1.0, x)) - x0) / (x1 - x0) * (W - left - right); };
  auto Y = [&](double y) { return H - bottom - (y - y0) / (y1 - y0) * (H - top - bottom); };

  std::ostringstream s;
  s << "<svg xmlns='http://www.w3.org/2000/svg' width='" << W << "' height='" << H
    << "' font-family='sans-serif' font-size='12'>\n<rect width='100%' height='100%' fill='white'/>\n"
    << "<text x='" << left << "' y='20' font-size='14'>" << xml_escape(axes.title) << "</text>\n";
  for (double e = x0; e <= x1; ++e)
    s << "<line x1='" << X(std::pow(10, e)) << "' y1='" << top << "' x2='" << X(std::pow(10, e)) << "' y2='"
      << H - bottom << "' stroke='#ddd'/><text x='" << X(std::pow(10, e)) - 12 << "' y='" << H - bottom + 18
      << "'>1e" << e << "</text>\n";
  for (double y = y0; y <= y1 + step * 1e-6; y += step)
    s << "<line x1='" << left << "' y1='" << Y(y) << "' x2='" << W - right << "' y2='" << Y(y)
      << "' stroke='#eee'/><text x='" << left - 50 << "' y='" << Y(y) + 4 << "'>" << std::round(y * 100) / 100
      << axes.y_unit << "</text>\n";
  s << "<text x='" << left << "' y='" << H - 14 << "'>" << xml_escape(axes.x_label) << " (log scale)</text>\n"
    << "<text transform='translate(14," << (H - bottom) << ") rotate(-90)'>" << xml_escape(axes.y_label) << "</text>\n";
  // Legend entries in the order of the points' heights, so leader lines rarely cross.
  std::vector<std::size_t> order(points.size());
  for (std::size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return points[a].y > points[b].y; });
  for (std::size_t slot = 0; slot < order.size(); ++slot) {
    const auto& p = points[order[slot]];
    const double px = X(p.x), py = Y(p.y), ly = top + legend_line * static_cast<double>(slot);
    s << "<circle cx='" << px << "' cy='" << py << "' r='4' fill='" << p.color << "'/>\n"
      << "<line x1='" << px << "' y1='" << py << "' x2='" << W - right + 10 << "' y2='" << ly << "' stroke='"
      << p.color << "' stroke-opacity='0.3'/><text x='" << W - right + 14 << "' y='" << ly + 4 << "' fill='"
      << p.color << "'>" << xml_escape(p.label) << "</text>\n";
  }
  s << "</svg>\n";
  return s.str();
}

}  // namespace peft::bench
