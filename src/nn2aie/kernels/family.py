"""The interface every op family implements (shared/design-families.md; docs/architecture.md "Adding a family").

A family owns, side by side in ``kernels/<family>/``: the logical semantics of its op kinds (verify + the exact
integer model), planning (types, accumulator, epilogue, the variant per device generation), parallelism and the
DSE growth step, partition into tile kernels with ports and parameters, the per-tile bit-exact semantics the
emulator runs, cycle cost, resources, C++ rendering, the native co-simulation spec and summary fields.

Nothing outside a family's folder and ``kernels/registry.py`` imports the family's modules: callers reach a family
through ``registry.family_for(kind)`` and the methods below. Methods a family does not need keep the defaults here,
which refuse with a typed error naming the op (a family that cannot be planned must never be silently skipped).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from nn2aie.errors import UnsupportedOpError
from nn2aie.ir.physical import PortSpec  # noqa: F401  (re-exported: families import it from here)

if TYPE_CHECKING:
    from nn2aie.devices import Device
    from nn2aie.ir.execution import OpExec
    from nn2aie.ir.logical import Graph, Op
    from nn2aie.ir.physical import BufferAlloc, Kernel
    from nn2aie.ir.tiling import BlockLayout

Fail = Callable[[str, str], None]  # fail(where, reason): raises InternalCheckError


@dataclass(frozen=True)
class KernelInstance:
    """What the ADF graph needs to create and wire one tile kernel (as graph.h prints it)."""

    type_name: str  # C++ class, e.g. DenseL0<DenseRole::single>
    ctor_args: tuple[str, ...]  # C++ expressions, in constructor order
    params: tuple[str, ...]  # Kernel.memory buffer name of k.param[0], k.param[1], ...
    source: str  # kernel source, relative to the project's src/ directory
    in_ports: dict[str, int] = field(default_factory=dict)  # data port name -> k.in[] index
    out_ports: dict[str, int] = field(default_factory=dict)  # data port name -> k.out[] index
    cascade_in_port: int | None = None
    cascade_out_port: int | None = None


class OpFamily(ABC):
    """One op family. Instances are stateless; the registry holds one of each."""

    name: str = ""  # folder name under kernels/, e.g. "dense"
    kinds: tuple[str, ...] = ()  # logical op kinds this family implements

    # -- logical ------------------------------------------------------------------------------------------------
    @abstractmethod
    def verify(self, graph: Graph, op: Op, fail: Fail) -> None:
        """Check the op's arity, shapes, types and attributes; call ``fail(where, reason)`` on a violation."""

    @abstractmethod
    def evaluate(self, graph: Graph, op: Op, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """The logical integer model: input codes (int64, shape [events, *tensor.shape], constants as stored)
        -> output codes (int64, [events, *shape]) of every output, exactly as the source framework computes."""

    # -- planning ----------------------------------------------------------------------------------------------
    override_keys: frozenset[str] = frozenset()  # keys a user may give per layer in --config

    def validate_override(self, layer: str, override: dict) -> None:
        """Raise IllegalConfigError for keys or values this family does not accept."""
        from nn2aie.errors import IllegalConfigError

        unknown = set(override) - set(self.override_keys)
        if unknown:
            keys = ", ".join(sorted(self.override_keys)) or "none"
            raise IllegalConfigError(f"override for layer {layer}", f"unknown keys in {override!r}",
                                     f"a {self.name} layer accepts: {keys}")

    def plan(self, graph: Graph, op: Op, device: Device, batch: int, override: dict) -> OpExec:
        """Types, accumulator, epilogue and variant of the op (the precision pass)."""
        raise self.unsupported(op, "be planned")

    def parallelise(self, graph: Graph, e: OpExec, device: Device, max_weight_bytes: int,
                    override: dict | None) -> None:
        """Choose the footprint (cas_length x cas_num) and the per-tile blocking (the parallelism pass)."""
        raise self.unsupported(graph.op(e.op), "be parallelised")

    def grow(self, e: OpExec, device: Device) -> dict | None:
        """One DSE step: an override giving about twice the tiles, or None when the op cannot grow."""
        return None

    def column_alias(self, graph: Graph, op: Op, e: OpExec) -> list[int] | None:
        """For an op that moves no data when its inputs are stored as column ranges of its output (a concat on
        the last axis, a rename): the first output column of each activation input; None otherwise. The pipeline
        then checks the producers and, where the memory tiles can hold it, calls ``resolve_alias``."""
        return None

    def fuse_input(self, graph: Graph, op: Op, e: OpExec, tensor: str, producer: Op, pe: OpExec,
                   reads: list[str]) -> list[str] | None:
        """Absorb ``producer`` (whose output ``tensor`` only this op reads) into this op's tiles: re-plan ``e`` to
        read the producer's inputs instead, mark ``pe`` as running inside ``e`` (no tiles), and return the
        tensors this op's input ports now read (``reads`` is the current list). None: no fusion (the default)."""
        return None

    def column_window(self, graph: Graph, op: Op, e: OpExec) -> int | None:
        """For an op whose output is one column range of its input (a slice on the last axis): the first input
        column it takes; None otherwise. Where it is legal the pipeline lets the output's readers read that range
        of the input's buffer and calls ``resolve_alias``."""
        return None

    def resolve_alias(self, e: OpExec) -> None:
        """Mark the op as resolved into its neighbours' memory-tile descriptors: no tiles (0 x 0)."""
        raise NotImplementedError

    # -- physical ----------------------------------------------------------------------------------------------
    def partition(self, graph: Graph, op: Op, e: OpExec, device: Device, layer_id: str) -> list[Kernel]:
        """The op's tile kernels (names, footprint positions, roles, parameters, memory maps, cascade links)."""
        raise self.unsupported(op, "be partitioned")

    def ports(self, e: OpExec, kernel: Kernel) -> list[PortSpec]:
        """The kernel's data ports, inputs in logical input order, then outputs."""
        raise NotImplementedError

    def port_slices(self, e: OpExec, direction: str, index: int = 0) -> list[tuple]:
        """(start, width) of every port of the op on its ``index``-th activation input / output, before
        partition (used to check that a tensor can be split over memory tiles); ``(start, width, window,
        events)`` where ports of the same columns move different windows (row bands: each is a DMA channel of its
        own), ``events`` the ``(first, count)`` of the iteration's events the window holds (None: all of them;
        a buffer whose ports all move ranges of events may be split by events over memory tiles)."""
        raise NotImplementedError

    def memory_map(self, e: OpExec, kernel: Kernel, device: Device, skip: frozenset[str]) -> list[BufferAlloc]:
        """The kernel's buffers in its tile memory, without those in ``skip`` (inputs read in place)."""
        raise NotImplementedError

    def input_buffers(self, port: str) -> tuple[str, str]:
        """Names of the (ping, pong) buffers of an input port in the memory map."""
        return (f"{port}_ping", f"{port}_pong")

    def output_buffers(self, port: str) -> tuple[str, str]:
        return (f"{port}_ping", f"{port}_pong")

    # -- emulation ---------------------------------------------------------------------------------------------
    def emulate(self, e: OpExec, kernels: list[Kernel], io: Any) -> None:
        """Run every tile of the op on all graph iterations at once, bit-exact: read input windows with
        ``io.read(kernel, port)`` and write outputs with ``io.write(kernel, port, matrix)`` (logical
        ``[iterations * rows, width]`` matrices); record co-simulation values with ``io.trace_*`` when tracing."""
        raise NotImplementedError

    def layout(self, e: OpExec, kernel: Kernel, port: PortSpec) -> BlockLayout | None:
        """The tile-side layout of a port's window (None: plain rows)."""
        from nn2aie.ir.tiling import BlockLayout

        if port.block is None:
            return None
        return BlockLayout(port.rows, port.width, port.block[0], port.block[1])

    # -- cost and resources ------------------------------------------------------------------------------------
    def tile_cycles(self, e: OpExec, kernel: Kernel) -> float:
        """Modelled cycles of one invocation of the kernel (call overhead included)."""
        raise NotImplementedError

    def max_tile_cycles(self, e: OpExec) -> float:
        """The slowest tile's modelled cycles, before partition (the memory plan sizes PLIOs with it)."""
        raise NotImplementedError

    def useful_ops(self, e: OpExec) -> int:
        """Useful multiply-accumulates (or element operations) of one graph iteration."""
        return 0

    def peak_ops_per_cycle(self, e: OpExec) -> int:
        """Native operations per cycle of one tile for this op's types (0: not a MAC-bound op)."""
        return 0

    def cost_assumptions(self) -> str:
        return ""

    def program_memory(self, e: OpExec, kernel: Kernel, device: Device) -> int:
        """Program memory of the kernel (estimate, bytes)."""
        raise NotImplementedError

    # -- codegen and co-simulation -----------------------------------------------------------------------------
    def render(self, e: OpExec, index: int, kernels: list[tuple[Kernel, str]], comment: str) -> dict[str, str]:
        """The op's C++ sources and parameter headers {path relative to src/: text}; ``kernels`` pairs each tile
        with its C++ identifier; ``comment`` is already safe inside a // comment."""
        raise NotImplementedError

    def includes(self, e: OpExec, index: int) -> list[str]:
        """Headers graph.h includes for this op (paths relative to src/)."""
        raise NotImplementedError

    def param_headers(self, e: OpExec, index: int) -> list[str]:
        """Parameter headers (weights, tables) among ``render``'s files; graph.h includes them after the kernels."""
        return []

    def instance(self, e: OpExec, index: int, kernel: Kernel, ident: str) -> KernelInstance:
        raise NotImplementedError

    def describe(self, e: OpExec, index: int) -> str:
        """One line for graph.h's header (model-supplied names already made comment-safe by the caller)."""
        raise NotImplementedError

    def describe_kernel(self, e: OpExec, kernel: Kernel) -> str:
        """The tail of graph.h's comment line above a kernel."""
        return f"{kernel.role}"

    def native_sources(self, e: OpExec, index: int) -> list[str]:
        """Paths (relative to src/) the native driver needs from the rendered project."""
        raise NotImplementedError

    def native_driver(self, e: OpExec, index: int, entries: list[dict]) -> str:
        """C++ driver source running each kernel instance of ``entries`` on files (see sim/native)."""
        raise NotImplementedError

    # -- reporting ---------------------------------------------------------------------------------------------
    def unsupported(self, op: Op, what: str) -> UnsupportedOpError:
        return UnsupportedOpError(f"op {op.name} ({op.kind})", f"the {self.name} family cannot yet {what}",
                                  "see the README's 'What works today' table")

    def summary(self, graph: Graph, op: Op, e: OpExec) -> dict:
        """Family-specific fields of the op's entry in summary.json (generic fields are the caller's)."""
        return {}


@dataclass
class NativeRun:
    """How the native harness runs one kernel instance: the driver's arguments after ENTRY and ITERATIONS (files
    the family already wrote), where the driver writes its output, its dtype, and the emulator's values to compare
    (flat, in the order the driver writes them)."""

    args: list[str]
    out_path: Any
    out_dtype: Any
    want: np.ndarray
    files: list[Any] = field(default_factory=list)  # temporary files to remove afterwards
    output: str = "buffer"  # what is compared: "buffer" (output codes) or "cascade" (accumulator lanes)
