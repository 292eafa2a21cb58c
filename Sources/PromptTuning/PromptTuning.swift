// PromptTuning
