"""toto_eval.leaderboard"""
