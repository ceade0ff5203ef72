// Reads "pattern<TAB>name" lines and prints, per line, "FM" (re.fullmatch and
// re.match as 0/1) or "E <message>": the C++ side of module_pattern_vs_python.py.
#include <iostream>
#include <string>

#include <peft/io/module_pattern.hpp>

int main() {
  std::string line;
  while (std::getline(std::cin, line)) {
    const auto tab = line.find('\t');
    if (tab == std::string::npos) return 2;
    try {
      const peft::io::ModulePattern p(line.substr(0, tab));
      const std::string name = line.substr(tab + 1);
      std::cout << p.full_match(name) << p.match(name) << "\n";
    } catch (const peft::Error& e) {
      std::cout << "E " << e.what() << "\n";
    }
  }
}
