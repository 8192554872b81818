"""duelist.train"""
