"""duelist.eval"""
