"""Operating the system: the `marketing` CLI, the POS simulator and the demo."""
