"""Safety: shields (Llama Guard, Prompt Guard, code scanner), their registry and the Safety deployment."""
