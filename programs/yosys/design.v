// A tiny design for the yosys program test: an 8-bit counter with load and enable,
// and a small ALU on the counter's value.
module top (
    input  wire       clk,
    input  wire       rst,
    input  wire       en,
    input  wire       load,
    input  wire [7:0] din,
    input  wire [1:0] op,
    output reg  [7:0] count,
    output reg  [7:0] alu,
    output wire       zero
);
    always @(posedge clk) begin
        if (rst)
            count <= 8'd0;
        else if (load)
            count <= din;
        else if (en)
            count <= count + 8'd1;
    end

    always @(*) begin
        case (op)
            2'd0: alu = count + din;
            2'd1: alu = count - din;
            2'd2: alu = count & din;
            default: alu = count ^ din;
        endcase
    end

    assign zero = (alu == 8'd0);
endmodule
