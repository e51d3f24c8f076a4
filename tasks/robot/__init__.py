"""Robot manipulation: pybullet tasks, scripted experts, demonstrations, behaviour cloning from frozen features.

The Toto paper follows MVP/PixMC (Isaac Gym, PPO) for its simulated Franka/Kuka pick and cabinet panels. Isaac
Gym is not installable here, so this package rebuilds the four panels in pybullet (CPU renderer, assets in the
wheel) and replaces PPO by behaviour cloning from scripted-expert demonstrations: a PixMC-inspired CPU
substitute, not a reproduction. Modules: `robots` (arms and grippers), `envs` (scenes, camera, success),
`experts` (IK phase scripts), `demos` (record once, reuse), `policy` (MVP-shaped head), `rollout` (evaluation
with Wilson intervals), `task` (the registered `robot` task) and `cli` (`toto-eval robot demos`).
"""
