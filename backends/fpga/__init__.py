"""FPGA backend: integer IR -> fixed-point netlist (netlist.json) -> Verilog, testbench, yosys."""
