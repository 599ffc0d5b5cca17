from django.urls import path

from backend.stats import apis

urlpatterns = [
    path("stats/city", apis.CityStatsView.as_view(), name="stats-city"),
    path("stats/districts/<str:code>", apis.DistrictStatsView.as_view(), name="stats-district"),
    path("stats/plan", apis.PlanPanelView.as_view(), name="stats-plan"),
    path("admin/stats", apis.AdminStatsView.as_view(), name="admin-stats"),
    path("leaderboards/districts", apis.DistrictRankingView.as_view(), name="leaderboards-districts"),
    path("leaderboards/<str:period>", apis.LeaderboardView.as_view(), name="leaderboards"),
    path("me/summary", apis.MeSummaryView.as_view(), name="me-summary"),
    path("me/leaderboard-listing", apis.MeLeaderboardListingView.as_view(), name="me-leaderboard-listing"),
]
