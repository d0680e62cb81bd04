# A deterministic scipy + scikit-learn workload for the real-programs test (programs/README.md):
# optimisation, linear algebra, quadrature, a sparse solve, k-means and a cross-validated fit.
import numpy as np
from scipy import optimize, linalg, integrate, sparse
from scipy.sparse.linalg import spsolve
from sklearn.cluster import KMeans
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.datasets import make_classification
import scipy, sklearn
print("scipy", scipy.__version__, "sklearn", sklearn.__version__)
rng = np.random.default_rng(7)
t = np.linspace(0, 5, 200)
(a, k), _ = optimize.curve_fit(lambda t, a, k: a * np.exp(-k * t), t, 3 * np.exp(-0.7 * t) + rng.normal(0, 0.1, t.size))
print(f"curve_fit a={a:.3f} k={k:.3f}")
r = optimize.minimize(lambda x: (x[0] - 1) ** 2 + 100 * (x[1] - x[0] ** 2) ** 2, [-1.2, 1.0], method="BFGS")
print(f"rosenbrock x={r.x[0]:.4f},{r.x[1]:.4f} success={r.success}")
m = np.array([[4.0, 1.0], [2.0, 3.0]])
print("eig:", sorted(round(float(v.real), 6) for v in linalg.eigvals(m)))
print(f"quad sin 0..pi = {integrate.quad(np.sin, 0, np.pi)[0]:.10f}")
A = sparse.diags([-1.0, 2.0, -1.0], [-1, 0, 1], shape=(6, 6), format="csc", dtype=np.float64)
print("spsolve:", np.round(spsolve(A, np.ones(6)), 4).tolist())
pts = np.vstack([c + rng.normal(0, 0.5, (50, 2)) for c in ([1, 1], [5, 5], [1, 5])])
km = KMeans(n_clusters=3, n_init=10, random_state=0).fit(pts)
print("kmeans centers:", sorted([round(float(x), 1), round(float(y), 1)] for x, y in km.cluster_centers_))
X, y = make_classification(n_samples=200, n_features=5, random_state=0)
print(f"logreg cv accuracy {cross_val_score(LogisticRegression(max_iter=200), X, y, cv=5).mean():.4f}")
