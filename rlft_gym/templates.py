"""How a (prompt, response) pair is written for the scorers: one definition for training and scoring alike."""

PAIR_TEMPLATE = "user : {prompt} assistant : {response}"
PROMPT_TEMPLATE = "user : {prompt} assistant :"  # the embedded world's policy prompt: a pair's prompt half
