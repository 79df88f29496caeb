#include "datasets/h5_io.h"

namespace posttrain {

namespace {

H5::StrType utf8_string_type() {
  H5::StrType type(H5::PredType::C_S1, H5T_VARIABLE);
  type.setCset(H5T_CSET_UTF8);
  return type;
}

}  // namespace

void write_string_column(H5::H5File& file, const std::string& name, const std::vector<std::string>& values) {
  const hsize_t size = values.size();
  H5::DataSpace space(1, &size);
  const H5::StrType type = utf8_string_type();
  H5::DataSet dataset = file.createDataSet(name, type, space, column_properties(size, 1 << 12));
  std::vector<const char*> pointers;
  pointers.reserve(values.size());
  for (const auto& v : values) pointers.push_back(v.c_str());
  if (size > 0) dataset.write(pointers.data(), type);
}

std::vector<std::string> read_string_column(H5::H5File& file, const std::string& name) {
  H5::DataSet dataset = file.openDataSet(name);
  hsize_t size = 0;
  dataset.getSpace().getSimpleExtentDims(&size);
  std::vector<char*> pointers(size, nullptr);
  const H5::StrType type = utf8_string_type();
  if (size > 0) dataset.read(pointers.data(), type);
  std::vector<std::string> values;
  values.reserve(size);
  for (char* p : pointers) values.emplace_back(p == nullptr ? "" : p);
  if (size > 0) H5::DataSet::vlenReclaim(pointers.data(), type, dataset.getSpace());
  return values;
}

}  // namespace posttrain
