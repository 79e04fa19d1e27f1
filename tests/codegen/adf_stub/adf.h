// Syntax-only stand-in for the graph side of AMD's <adf.h>, for `g++ -fsyntax-only` on nn2aie's emitted graph.h /
// graph.cpp (tests only; nothing here runs). The kernel side (buffer and cascade ports, int8/int32..., kernel-class
// registration) comes from nn2aie's AIE-API emulation header, included next on the include path.
//
// Declared after the ADF API as AMD documents it (UG1603 "AI Engine-ML Kernel and Graph Programming Guide" and
// UG1079: graph, kernel::create_object, input_plio / output_plio::create, shared_buffer<T>::create, connect,
// tiling_parameters / traversing_parameters field order, location constraints, runtime<ratio>, source,
// num_buffers). Only what nn2aie emits is declared. Where ADF returns one catch-all constraint type, this stub uses
// a distinct type per use (a tile for kernels, addresses for memory) so that a wrong combination fails to compile;
// ports carry their direction so that a reversed connect fails too.
#ifndef NN2AIE_TEST_ADF_GRAPH_STUB_H
#define NN2AIE_TEST_ADF_GRAPH_STUB_H

#include_next <adf.h>

#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace adf {

// -- ports ----------------------------------------------------------------------------------------------------
struct input {};
struct output {};

template <typename Direction>
struct port {};

// -- tags of location<> and runtime<> -------------------------------------------------------------------------
struct buffer {};
struct stack {};
struct parameter {};
struct ratio {};
struct cascade {};  // connect<cascade>: accumulator words between neighbouring kernels
struct PLIO {};  // location<PLIO>(plio) = shim(column): the interface column of a PLIO (UG1603, shim constraint)

// -- constraints --------------------------------------------------------------------------------------------------
struct tile_constraint {
  int col, row;
};
struct address_constraint {
  int col, row, offset;
};

struct shim_constraint {
  int col;
};

inline tile_constraint tile(int col, int row) { return {col, row}; }
inline shim_constraint shim(int col) { return {col}; }
inline address_constraint address(int col, int row, int offset) { return {col, row, offset}; }

struct kernel_location {
  kernel_location& operator=(const tile_constraint&) { return *this; }
};
struct memory_location {
  memory_location& operator=(const address_constraint&) { return *this; }
};
struct plio_location {
  plio_location& operator=(const shim_constraint&) { return *this; }
};
struct buffers_location {  // one address per buffer (ping, pong)
  buffers_location& operator=(const std::vector<address_constraint>&) { return *this; }
};

// -- kernels ------------------------------------------------------------------------------------------------------
class kernel {
 public:
  std::vector<port<input>> in;
  std::vector<port<output>> out;
  std::vector<port<parameter>> param;

  // A kernel class: registered with the compiler (registerKernelClass) and given its array-reference constructor
  // parameters as std::vector values, which the compiler allocates in tile memory.
  template <typename KernelClass, typename... Args>
  static kernel create_object(Args&&... args) {
    static_assert(std::is_class_v<KernelClass>, "create_object takes a kernel class");
    static_assert(std::is_same_v<decltype(&KernelClass::registerKernelClass), void (*)()>,
                  "a kernel class needs static void registerKernelClass()");
    static_assert((is_vector<std::decay_t<Args>>::value && ...), "parameters are passed as std::vector values");
    (void)sizeof...(args);
    return kernel();
  }

 private:
  template <typename T>
  struct is_vector : std::false_type {};
  template <typename T, typename A>
  struct is_vector<std::vector<T, A>> : std::true_type {};
};

std::string& source(kernel& k);

template <typename Constraint>
double& runtime(kernel& k);

// -- PLIOs --------------------------------------------------------------------------------------------------------
enum plio_type { plio_32_bits, plio_64_bits, plio_128_bits };

class input_plio {
 public:
  std::vector<port<output>> out;
  static input_plio create(const std::string& logical_name, plio_type plio_width, const std::string& datafile,
                           double frequency);
};

class output_plio {
 public:
  std::vector<port<input>> in;
  static output_plio create(const std::string& logical_name, plio_type plio_width, const std::string& datafile,
                            double frequency);
};

// -- memory-tile buffers and their DMA access patterns -------------------------------------------------------------
template <typename T>
class shared_buffer {
 public:
  std::vector<port<input>> in;
  std::vector<port<output>> out;
  static shared_buffer create(const std::vector<std::uint32_t>& dimensions, std::uint32_t num_inputs,
                              std::uint32_t num_outputs);
};

template <typename T>
std::uint32_t& num_buffers(shared_buffer<T>& buffer);

struct traversing_parameters {
  std::uint32_t dimension;
  std::uint32_t stride;
  std::uint32_t wrap;
};

struct tiling_parameters {  // fields in AMD's declaration order: designated initialisers must follow it
  std::vector<std::uint32_t> buffer_dimension;
  std::vector<std::uint32_t> tiling_dimension;
  std::vector<std::int32_t> offset;
  std::vector<traversing_parameters> tile_traversal;
  int packet_port_id = -1;
  std::uint32_t repetition = 1;
  std::uint32_t phase = 0;
  std::vector<std::uint32_t> boundary_dimension;
};

struct access_pattern {
  tiling_parameters parameters;
};

inline access_pattern tiling(tiling_parameters parameters) { return {std::move(parameters)}; }

struct access_rule {
  access_rule& operator=(const access_pattern&) { return *this; }
};

access_rule& write_access(port<input>& p);   // a DMA writing into the buffer
access_rule& read_access(port<output>& p);   // a DMA reading out of it

// -- connections ------------------------------------------------------------------------------------------------
template <typename ConnectionType = void>
struct connect {
  connect(port<output>& from, port<input>& to) {
    (void)from;
    (void)to;
  }
};

// -- location constraints ---------------------------------------------------------------------------------------
template <typename What>
struct location_of;

template <typename What, typename Object>
auto& location(Object& object) {
  return location_of<What>::of(object);
}

template <>
struct location_of<kernel> {
  static kernel_location& of(kernel& k);
};
template <>
struct location_of<stack> {
  static memory_location& of(kernel& k);
};
template <>
struct location_of<parameter> {
  static memory_location& of(port<parameter>& p);
};
template <>
struct location_of<PLIO> {
  static plio_location& of(input_plio& p);
  static plio_location& of(output_plio& p);
};
template <>
struct location_of<buffer> {
  template <typename Direction>
  static buffers_location& of(port<Direction>& p);
  template <typename T>
  static buffers_location& of(shared_buffer<T>& b);
};

// -- graphs -------------------------------------------------------------------------------------------------------
class graph {
 public:
  void init();
  void run(int iterations);
  void wait();
  void end();
};

}  // namespace adf

#endif  // NN2AIE_TEST_ADF_GRAPH_STUB_H
