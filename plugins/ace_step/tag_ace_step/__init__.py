"""ACE-Step 1.5 for TAG: songs with lyrics, 48 kHz stereo, built on the diffusers AceStepPipeline."""
