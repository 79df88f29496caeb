// Small HDF5 helpers shared by the tokenized shards and the per-example eval records: chunked,
// deflated one-dimensional columns, variable-length string columns, and scalar attributes.
#pragma once

#include <H5Cpp.h>

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

namespace posttrain {

// Creation properties of a one-dimensional column of `size` rows: chunks of at most max_chunk rows,
// deflate level 4 (none for an empty column, which HDF5 cannot chunk).
inline H5::DSetCreatPropList column_properties(hsize_t size, hsize_t max_chunk) {
  H5::DSetCreatPropList props;
  if (size > 0) {
    const hsize_t chunk = std::min<hsize_t>(size, max_chunk);
    props.setChunk(1, &chunk);
    props.setDeflate(4);
  }
  return props;
}

template <typename T>
void write_vector(H5::H5File& file, const std::string& name, const std::vector<T>& values, const H5::PredType& type) {
  const hsize_t size = values.size();
  H5::DataSpace space(1, &size);
  H5::DataSet dataset = file.createDataSet(name, type, space, column_properties(size, 1 << 16));
  if (size > 0) dataset.write(values.data(), type);
}

template <typename T>
std::vector<T> read_vector(H5::H5File& file, const std::string& name, const H5::PredType& type) {
  H5::DataSet dataset = file.openDataSet(name);
  hsize_t size = 0;
  dataset.getSpace().getSimpleExtentDims(&size);
  std::vector<T> values(size);
  if (size > 0) dataset.read(values.data(), type);
  return values;
}

inline void write_string_attr(H5::H5File& file, const std::string& name, const std::string& value) {
  H5::StrType type(H5::PredType::C_S1, value.empty() ? 1 : value.size());
  file.createAttribute(name, type, H5::DataSpace(H5S_SCALAR)).write(type, value);
}

inline std::string read_string_attr(H5::H5File& file, const std::string& name) {
  H5::Attribute attr = file.openAttribute(name);
  std::string value;
  attr.read(attr.getStrType(), value);
  return value;
}

inline void write_int_attr(H5::H5File& file, const std::string& name, int64_t value) {
  file.createAttribute(name, H5::PredType::NATIVE_INT64, H5::DataSpace(H5S_SCALAR))
      .write(H5::PredType::NATIVE_INT64, &value);
}

inline int64_t read_int_attr(H5::H5File& file, const std::string& name) {
  int64_t value = 0;
  file.openAttribute(name).read(H5::PredType::NATIVE_INT64, &value);
  return value;
}

// A column of variable-length UTF-8 strings (h5py reads it as bytes / str objects).
void write_string_column(H5::H5File& file, const std::string& name, const std::vector<std::string>& values);
std::vector<std::string> read_string_column(H5::H5File& file, const std::string& name);

}  // namespace posttrain
